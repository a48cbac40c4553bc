//! The scoped sync against the whole one (the oracle) on random
//! sequences of changes to a watch cache, mapped by the incremental
//! mapping: the same plan (writes, conflicts, ownership), the same
//! tables in two in-memory kernels and the same state files, with
//! another tool's virtual service in the way of some Services.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::mapping::incremental::tests::{change, node, Cache};
use crate::mapping::Incremental;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn a_sync_scoped_to_what_changed_is_the_whole_sync(
        changes in proptest::collection::vec(change(), 1..30),
    ) {
        let mut cache = Cache::default();
        let mut at = node(0);
        let mut incremental = Incremental::new();
        // Another tool's, at an address and port Services may want.
        let theirs = with_scheduler(vs("10.96.0.4:80", &["10.9.9.9:80"]), "wlc");
        let mut whole_kernel = Mem(vec![theirs.clone()]);
        let mut part_kernel = Mem(vec![theirs]);
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
