//! The scoped sync against the whole one (the oracle) on random
//! sequences of changes to a watch cache, mapped by the incremental
//! mapping: the same plan (writes, conflicts, ownership), the same
//! tables in two in-memory kernels and the same state files, with
//! another tool's virtual service in the way of some Services.

use std::sync::Arc;

use ipvs_plan::VirtualServerSpec;
use proptest::prelude::*;

use super::*;
use crate::mapping::incremental::tests::{change, node, Cache};
use crate::mapping::Incremental;

/// Two in-memory kernels, each with another tool's virtual service at an
/// address and port Services may want.
fn twin_kernels() -> (Mem, Mem) {
    let theirs = with_scheduler(vs("10.96.0.4:80", &["10.9.9.9:80"]), "wlc");
    (Mem(vec![theirs.clone()]), Mem(vec![theirs]))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn a_sync_scoped_to_what_changed_is_the_whole_sync(
        changes in proptest::collection::vec(change(), 1..30),
    ) {
        let mut cache = Cache::default();
        let mut at = node(0);
        let mut incremental = Incremental::new();
        let (mut whole_kernel, mut part_kernel) = twin_kernels();
        let (mut whole_state, whole_dir) = state_file();
        let (mut part_state, part_dir) = state_file();
        let mut conflicts: Option<HashSet<ServiceId>> = None;
        for change in &changes {
            cache.apply(change, &mut at);
            let services: Vec<Arc<_>> = cache.services.values().cloned().collect();
            let slices: Vec<Arc<_>> = cache.slices.values().cloned().collect();
            let (mapped, what) = incremental.map(&services, &slices, &at);
            let whole = step(&mut whole_kernel, &mapped, &mut whole_state, false, NodeSide::default());
            let scope = conflicts
                .as_ref()
                .filter(|_| !what.all)
                .map(|conflicts| Scope { ids: &what.ids, conflicts });
            let part = step_scoped(&mut part_kernel, &mapped, &mut part_state, false, NodeSide::default(), scope);
            prop_assert_eq!(&part.sync, &whole.sync, "after {:?}", change);
            prop_assert_eq!(&part.notes, &whole.notes);
            prop_assert_eq!(&part_kernel.0, &whole_kernel.0);
            prop_assert_eq!(&part_state.recorded, &whole_state.recorded);
            prop_assert!(!whole.error && whole.failed == 0);
            conflicts = Some(part.sync.plan.conflicts.iter().copied().collect());
        }
        let _ = std::fs::remove_dir_all(whole_dir);
        let _ = std::fs::remove_dir_all(part_dir);
    }
}

/// A measuring tool, not a check (`cargo test -p ipvs-k8s --lib --
/// --ignored --nocapture one_change_at`): the time of the whole map and
/// plan against the incremental map and the scoped plan of one changed
/// EndpointSlice, with 10,000 Services of 4 endpoints loaded.
#[test]
#[ignore = "a measurement: run it by hand"]
fn one_change_at_10000_services_mapped_and_planned() {
    use std::time::Instant;
    let n = 10_000usize;
    let svc = crate::sync::tests::bench_service;
    let slice = crate::sync::tests::bench_slice;
    let services: Vec<_> = (0..n).map(svc).collect();
    let mut slices: Vec<_> = (0..n).map(|i| slice(i, 0)).collect();
    let at = node(0);
    let mut incremental = Incremental::new();
    let (mapped, _) = incremental.map(&services, &slices, &at);
    let current = mapped.servers();
    let recorded: Records = current
        .iter()
        .map(|v| (v.service.id, Recorded::one(settings(&v.service))))
        .collect();
    let conflicts = HashSet::new();
    slices[4321] = slice(4321, 1);
    let t = Instant::now();
    let whole = crate::mapping::map_refs(
        services.iter().map(|s| &**s).collect(),
        &slices.iter().map(|s| &**s).collect::<Vec<_>>(),
        &at,
    );
    let mapped_whole = t.elapsed();
    let t = Instant::now();
    let whole_plan = plan_sync(&whole.servers(), &current, &recorded).unwrap();
    let planned_whole = t.elapsed();
    let t = Instant::now();
    let (part, what) = incremental.map(&services, &slices, &at);
    let mapped_part = t.elapsed();
    let t = Instant::now();
    let scope = Scope {
        ids: &what.ids,
        conflicts: &conflicts,
    };
    let part_plan = plan_sync_scoped(&part.desired, &current, &recorded, scope).unwrap();
    let planned_part = t.elapsed();
    assert_eq!(part, whole);
    assert_eq!(part_plan, whole_plan);
    assert_eq!(part_plan.plan.ops.len(), 8);
    println!(
        "{n} Services, one EndpointSlice changed: whole map {mapped_whole:?}, whole plan {planned_whole:?}; \
         incremental map {mapped_part:?} ({} Service mapped anew), scoped plan {planned_part:?}",
        what.services
    );
}

/// What another tool does to the table behind the loop's back before a
/// resync: to the first virtual service of ours (by the state file) that
/// has a real server, a weight edited (0), a real server removed (1), the
/// service removed (2); or another tool's service edited (3).
fn behind_our_back(kernel: &mut Mem, recorded: &Records, hand: u8) {
    let mut ours: Vec<&VirtualServer> = kernel
        .0
        .iter()
        .filter(|v| recorded.contains_key(&v.service.id) && !v.dests.is_empty())
        .collect();
    ours.sort_by_key(|v| v.service.id.to_string());
    let op = match (hand, ours.first()) {
        (0, Some(v)) => Op::EditDestination(v.service.id, v.dests[0].clone().weight(7)),
        (1, Some(v)) => Op::DeleteDestination(v.service.id, v.dests[0].socket_addr()),
        (2, Some(v)) => Op::DeleteService(v.service.id),
        (3, _) => {
            let theirs = id("10.96.0.4:80");
            let mut s = kernel.has(&theirs).service;
            s.scheduler = if s.scheduler == "wlc" { "lc" } else { "wlc" }.to_owned();
            Op::EditService(s)
        }
        _ => return,
    };
    kernel.one(&op);
}

/// The table as the planner sees it: the settings of every service, and
/// the real servers of ours (another tool's are never read on a resync).
fn seen(table: &[VirtualServer], recorded: &Records) -> Vec<VirtualServerSpec> {
    let mut specs: Vec<VirtualServerSpec> = table
        .iter()
        .map(|v| {
            let mut v = v.clone();
            if !recorded.contains_key(&v.service.id) {
                v.dests.clear();
            }
            let mut spec = VirtualServerSpec::from(&v);
            // The order of a service's real servers is no part of the
            // table (the in-memory kernel moves an edited one last, the
            // kernel keeps it in place, the patched table too).
            spec.dests.sort_by_key(|d| d.addr);
            spec
        })
        .collect();
    specs.sort_by_key(|v| v.service.id.to_string());
    specs
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// The live loop's way (sync_loop.rs): a sync after a change plans
    /// against the table the last good sync left (patched with its
    /// writes), a resync reads the services and (in a table this small)
    /// every real server of ours, and plans only what changed and what
    /// the read found otherwise than known. Against the whole sync of a
    /// twin kernel that another tool changes alike before each resync:
    /// the same plan, notes, kernel and state file; and the table it
    /// remembers is the kernel's.
    #[test]
    fn scoped_syncs_and_resyncs_of_what_changed_are_the_whole_sync(
        steps in proptest::collection::vec((change(), 0u8..6, any::<bool>()), 1..30),
    ) {
        let mut cache = Cache::default();
        let mut at = node(0);
        let mut incremental = Incremental::new();
        let (mut whole_kernel, mut part_kernel) = twin_kernels();
        let (mut whole_state, whole_dir) = state_file();
        let (mut part_state, part_dir) = state_file();
        let mut conflicts: Option<HashSet<ServiceId>> = None;
        let mut known: Option<Vec<VirtualServer>> = None;
        let mut turn = 0;
        for (change, hand, resync) in &steps {
            cache.apply(change, &mut at);
            let services: Vec<Arc<_>> = cache.services.values().cloned().collect();
            let slices: Vec<Arc<_>> = cache.slices.values().cloned().collect();
            let (mapped, mut what) = incremental.map(&services, &slices, &at);
            // Another tool's hand comes before a resync.
            let resync = *resync || *hand < 4;
            behind_our_back(&mut whole_kernel, &whole_state.recorded, *hand);
            behind_our_back(&mut part_kernel, &part_state.recorded, *hand);
            let whole = step(&mut whole_kernel, &mapped, &mut whole_state, false, NodeSide::default());
            let (mut current, drift) = match (known.take(), resync) {
                (Some(k), true) => {
                    turn += 1;
                    let read = resync_table(&mut part_kernel, k, &part_state.ids(), &what.ids, turn).unwrap();
                    (read.table, Some(read.drift))
                }
                (Some(k), false) => (k, Some(HashSet::new())),
                (None, _) => (part_kernel.table().unwrap(), None),
            };
            let scoped = drift.is_some() && !what.all;
            what.ids.extend(drift.into_iter().flatten());
            let scope = conflicts
                .as_ref()
                .filter(|_| scoped)
                .map(|conflicts| Scope { ids: &what.ids, conflicts });
            let part = step_against(&mut part_kernel, &current, &mapped, &mut part_state, false, NodeSide::default(), scope);
            prop_assert_eq!(&part.sync, &whole.sync, "after {:?}, hand {}", change, hand);
            prop_assert_eq!(&part.notes, &whole.notes);
            prop_assert_eq!(&part_kernel.0, &whole_kernel.0);
            prop_assert_eq!(&part_state.recorded, &whole_state.recorded);
            prop_assert!(!whole.error && whole.failed == 0 && whole.sync.draining.is_empty());
            patch_table(&mut current, &part.sync.plan.ops);
            let kernel = part_kernel.table().unwrap();
            prop_assert_eq!(seen(&current, &part_state.recorded), seen(&kernel, &part_state.recorded));
            known = Some(current);
            conflicts = Some(part.sync.plan.conflicts.iter().copied().collect());
        }
        let _ = std::fs::remove_dir_all(whole_dir);
        let _ = std::fs::remove_dir_all(part_dir);
    }
}
