//! The incremental mapping against the full one ([`map_refs`], the
//! oracle) on random sequences of changes to a watch cache: Services and
//! EndpointSlices put (new or replaced, sometimes by an equal copy),
//! deleted, and the node changed. After each change both give the same
//! table, and every virtual service outside [`Changes::ids`] is as the
//! last map had it.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::mapping::map_refs;

/// One change to the cache.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// Service `n` of namespace `ns`, with settings drawn from `shape`.
    PutService {
        ns: u8,
        n: u8,
        shape: [u8; 6],
    },
    DeleteService {
        ns: u8,
        n: u8,
    },
    /// Slice `k` of Service `n`.
    PutSlice {
        ns: u8,
        n: u8,
        k: u8,
        shape: [u8; 6],
    },
    DeleteSlice {
        ns: u8,
        n: u8,
        k: u8,
    },
    /// The same object again, as a new one (a resync of the cache).
    Touch {
        service: bool,
        pick: u8,
    },
    Node {
        shape: u8,
    },
}

pub(crate) fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        4 => (0..2u8, 0..6u8, any::<[u8; 6]>()).prop_map(|(ns, n, shape)| Change::PutService { ns, n, shape }),
        1 => (0..2u8, 0..6u8).prop_map(|(ns, n)| Change::DeleteService { ns, n }),
        5 => (0..2u8, 0..6u8, 0..2u8, any::<[u8; 6]>()).prop_map(|(ns, n, k, shape)| Change::PutSlice { ns, n, k, shape }),
        1 => (0..2u8, 0..6u8, 0..2u8).prop_map(|(ns, n, k)| Change::DeleteSlice { ns, n, k }),
        1 => (any::<bool>(), any::<u8>()).prop_map(|(service, pick)| Change::Touch { service, pick }),
        1 => any::<u8>().prop_map(|shape| Change::Node { shape }),
    ]
}

fn service(ns: u8, n: u8, shape: [u8; 6]) -> core::Service {
    // Few ClusterIPs, so that Services want one address and port.
    let cluster_ip = match shape[0] % 8 {
        0 => "None".to_owned(),
        1 => "not-an-ip".to_owned(),
        v => format!("10.96.0.{}", v % 5),
    };
    let type_ = ["ClusterIP", "NodePort", "LoadBalancer"][usize::from(shape[1] % 3)];
    let mut ports = vec![json!({"name": "http", "port": 80, "nodePort": 30000 + u16::from(n)})];
    if shape[2].is_multiple_of(2) {
        ports.push(
            json!({"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 31000 + u16::from(n)}),
        );
    }
    let mut spec = json!({
        "clusterIP": cluster_ip,
        "type": type_,
        "ports": ports,
        "externalTrafficPolicy": if shape[3].is_multiple_of(2) { "Local" } else { "Cluster" },
        "internalTrafficPolicy": if shape[3].is_multiple_of(3) { "Local" } else { "Cluster" },
    });
    if shape[4].is_multiple_of(3) {
        spec["externalIPs"] = json!([format!("192.0.2.{}", shape[4] % 4)]);
    }
    if shape[4] % 4 == 1 {
        spec["sessionAffinity"] = json!("ClientIP");
    }
    if type_ == "LoadBalancer" {
        spec["healthCheckNodePort"] = json!(32000 + u16::from(n));
    }
    let mut annotations = serde_json::Map::new();
    if shape[5].is_multiple_of(4) {
        annotations.insert("ipvs.kubernetes.io/scheduler".into(), json!("wlc"));
    }
    let status = if type_ == "LoadBalancer" && shape[5] % 2 == 1 {
        json!({"loadBalancer": {"ingress": [{"ip": format!("203.0.113.{}", shape[5] % 3)}]}})
    } else {
        json!({})
    };
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("svc-{n}"), "namespace": format!("ns-{ns}"), "annotations": annotations},
        "spec": spec,
        "status": status,
    }))
    .unwrap()
}

fn slice(ns: u8, n: u8, k: u8, shape: [u8; 6]) -> discovery::EndpointSlice {
    let endpoints: Vec<_> = (0..shape[0] % 4)
        .map(|e| {
            let s = shape[usize::from(e) + 1];
            json!({
                "addresses": [format!("10.244.{k}.{}", s % 6)],
                "conditions": {"ready": !s.is_multiple_of(3), "serving": !s.is_multiple_of(5), "terminating": s.is_multiple_of(3)},
                "nodeName": if s.is_multiple_of(2) { "node-a" } else { "node-b" },
                "hints": {"forZones": [{"name": if s % 4 < 2 { "zone-a" } else { "zone-b" }}]},
            })
        })
        .collect();
    let mut ports = vec![json!({"name": "http", "port": 8080})];
    if shape[5].is_multiple_of(2) {
        ports.push(json!({"name": "dns", "port": 53, "protocol": "UDP"}));
    }
    let address_type = if shape[5] % 7 == 3 { "FQDN" } else { "IPv4" };
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("svc-{n}-{k}"), "namespace": format!("ns-{ns}"),
                     "labels": {"kubernetes.io/service-name": format!("svc-{n}")}},
        "addressType": address_type,
        "ports": ports,
        "endpoints": endpoints,
    }))
    .unwrap()
}

pub(crate) fn node(shape: u8) -> Node {
    Node {
        ips: vec![format!("192.168.49.{}", 2 + shape % 2).parse().unwrap()],
        name: Some(if shape % 4 < 2 { "node-a" } else { "node-b" }.to_owned()),
        zone: Some(if shape % 8 < 4 { "zone-a" } else { "zone-b" }.to_owned()),
        scheduler: "rr".to_owned(),
    }
}

/// A watch cache: objects by key, each shared.
#[derive(Default)]
pub(crate) struct Cache {
    pub(crate) services: BTreeMap<(u8, u8), Arc<core::Service>>,
    pub(crate) slices: BTreeMap<(u8, u8, u8), Arc<discovery::EndpointSlice>>,
}

impl Cache {
    pub(crate) fn apply(&mut self, change: &Change, at: &mut Node) {
        match *change {
            Change::PutService { ns, n, shape } => {
                self.services
                    .insert((ns, n), Arc::new(service(ns, n, shape)));
            }
            Change::DeleteService { ns, n } => {
                self.services.remove(&(ns, n));
            }
            Change::PutSlice { ns, n, k, shape } => {
                self.slices
                    .insert((ns, n, k), Arc::new(slice(ns, n, k, shape)));
            }
            Change::DeleteSlice { ns, n, k } => {
                self.slices.remove(&(ns, n, k));
            }
            Change::Touch {
                service: true,
                pick,
            } if !self.services.is_empty() => {
                let i = usize::from(pick) % self.services.len();
                if let Some(s) = self.services.values_mut().nth(i) {
                    *s = Arc::new((**s).clone());
                }
            }
            Change::Touch { pick, .. } if !self.slices.is_empty() => {
                let i = usize::from(pick) % self.slices.len();
                if let Some(s) = self.slices.values_mut().nth(i) {
                    *s = Arc::new((**s).clone());
                }
            }
            Change::Touch { .. } => {}
            Change::Node { shape } => *at = node(shape),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_incremental_map_is_the_full_map_and_says_what_can_differ(
        changes in proptest::collection::vec(change(), 1..40),
        reversed in any::<bool>(),
        keep in any::<bool>(),
        marks in any::<bool>(),
    ) {
        let mut cache = Cache::default();
        let mut at = node(0);
        let mut incremental = Incremental::new();
        // The table handed back (patched by the next map), and the one
        // the last map gave.
        let mut last: Option<Mapped> = None;
        let mut before: Option<Mapped> = None;
        for change in &changes {
            cache.apply(change, &mut at);
            // The cache's order is its own: the maps may not depend on it.
            let mut services: Vec<Arc<core::Service>> = cache.services.values().cloned().collect();
            let mut slices: Vec<Arc<discovery::EndpointSlice>> = cache.slices.values().cloned().collect();
            if reversed {
                services.reverse();
                slices.reverse();
            }
            // The live loop keeps the last table and hands it back.
            let (got, what, fresh) = if keep {
                incremental.map_or_keep(&services, &slices, &at, last.clone())
            } else {
                let (got, what) = incremental.map(&services, &slices, &at);
                (got, what, true)
            };
            let full = map_refs(
                services.iter().map(|s| &**s).collect(),
                &slices.iter().map(|s| &**s).collect::<Vec<_>>(),
                &at,
            );
            if fresh {
                prop_assert_eq!(&got, &full, "after {:?}", change);
            } else {
                // Nothing changed: the table handed back, as it was.
                prop_assert_eq!(Some(&got), last.as_ref(), "after {:?}", change);
                prop_assert_eq!(Some(&full), before.as_ref(), "after {:?}", change);
            }
            // The same objects again (a no-op resync): the kept table,
            // nothing changed, nothing put together.
            let (again, nothing, again_fresh) =
                incremental.map_or_keep(&services, &slices, &at, Some(got.clone()));
            prop_assert_eq!(&again, &got);
            prop_assert_eq!(nothing, Changes::default());
            prop_assert!(!again_fresh);
            if let Some(before) = before.as_ref().filter(|_| !what.all) {
                let find = |m: &Mapped, id: &ServiceId| {
                    m.desired.iter().find(|d| d.server.service.id == *id).cloned()
                };
                for d in before.desired.iter().chain(&full.desired) {
                    let id = d.server.service.id;
                    if !what.ids.contains(&id) {
                        prop_assert_eq!(find(before, &id), find(&full, &id), "{} after {:?}", id, change);
                    }
                }
            }
            // The live loop gives the table its firewall marks (added at
            // the end of its lists, and to its ports) before it hands it
            // back.
            let mut handed = got;
            if marks && fresh {
                crate::mapping::assign_fwmarks(
                    &mut handed,
                    &BTreeMap::new(),
                    crate::mapping::FwmarkRange::default(),
                    "rr",
                );
            }
            last = Some(handed);
            before = Some(full);
        }
    }
}

/// A map with nothing changed maps no Service anew; a changed slice maps
/// its one Service anew.
#[test]
fn only_what_changed_is_mapped_anew() {
    let mut cache = Cache::default();
    let mut at = node(0);
    for n in 0..4 {
        cache.apply(
            &Change::PutService {
                ns: 0,
                n,
                shape: [2 + n, 0, 1, 1, 1, 1],
            },
            &mut at,
        );
        cache.apply(
            &Change::PutSlice {
                ns: 0,
                n,
                k: 0,
                shape: [3, 1, 2, 4, 0, 1],
            },
            &mut at,
        );
    }
    let services: Vec<_> = cache.services.values().cloned().collect();
    let slices: Vec<_> = cache.slices.values().cloned().collect();
    let mut incremental = Incremental::new();
    let (first, what) = incremental.map(&services, &slices, &at);
    assert!(what.all);
    assert_eq!(what.services, 4);
    assert_eq!(first.desired.len(), 4);
    let (again, what) = incremental.map(&services, &slices, &at);
    assert_eq!(again, first);
    assert_eq!(what, Changes::default());
    cache.apply(
        &Change::PutSlice {
            ns: 0,
            n: 1,
            k: 0,
            shape: [1, 5, 0, 0, 0, 1],
        },
        &mut at,
    );
    let slices: Vec<_> = cache.slices.values().cloned().collect();
    let (_, what) = incremental.map(&services, &slices, &at);
    assert!(!what.all);
    assert_eq!(what.services, 1);
    let vip: ServiceId = ServiceId::tcp("10.96.0.3:80".parse().unwrap());
    assert_eq!(what.ids, [vip].into_iter().collect());
}

/// Two Services that want one virtual service: the first in the table's
/// order has it. When the first goes, or is renamed after the second,
/// the second takes it, in a table patched from the one handed back,
/// as the whole mapping gives it.
#[test]
fn a_virtual_service_two_services_want_changes_hands_when_the_first_goes() {
    let mut cache = Cache::default();
    let mut at = node(0);
    // ClusterIP 10.96.0.2, port http only, Cluster policies.
    let shape = [2, 0, 1, 1, 2, 1];
    for (n, address) in [(1, 1), (3, 2)] {
        cache.apply(&Change::PutService { ns: 0, n, shape }, &mut at);
        cache.apply(
            &Change::PutSlice {
                ns: 0,
                n,
                k: 0,
                shape: [1, address, 0, 0, 0, 1],
            },
            &mut at,
        );
    }
    let vip = ServiceId::tcp("10.96.0.2:80".parse().unwrap());
    let mut incremental = Incremental::new();
    let mut last: Option<Mapped> = None;
    let here = at.clone();
    let mut map = |cache: &Cache, last: &mut Option<Mapped>| {
        let services: Vec<_> = cache.services.values().cloned().collect();
        let slices: Vec<_> = cache.slices.values().cloned().collect();
        let (got, what, _) = incremental.map_or_keep(&services, &slices, &here, last.take());
        let full = map_refs(
            services.iter().map(|s| &**s).collect(),
            &slices.iter().map(|s| &**s).collect::<Vec<_>>(),
            &here,
        );
        assert_eq!(got, full);
        *last = Some(got.clone());
        let holder = got
            .desired
            .iter()
            .find(|d| d.server.service.id == vip)
            .map(|d| (d.origin.clone(), d.server.dests[0].addr.to_string()));
        (holder, got.warnings, what)
    };
    let (holder, warnings, _) = map(&cache, &mut last);
    assert_eq!(
        holder,
        Some(("ns-0/svc-1:http".into(), "10.244.0.1".into()))
    );
    assert_eq!(
        warnings,
        ["TCP 10.96.0.2:80 is wanted by ns-0/svc-1:http and by ns-0/svc-3:http: kept ns-0/svc-1:http"]
    );
    // The first goes: the second takes it.
    cache.apply(&Change::DeleteService { ns: 0, n: 1 }, &mut at);
    let (holder, warnings, what) = map(&cache, &mut last);
    assert_eq!(
        holder,
        Some(("ns-0/svc-3:http".into(), "10.244.0.2".into()))
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(!what.all && what.services == 1 && what.ids.contains(&vip));
    // Back before the second: it has it again.
    cache.apply(&Change::PutService { ns: 0, n: 1, shape }, &mut at);
    let (holder, warnings, _) = map(&cache, &mut last);
    assert_eq!(
        holder,
        Some(("ns-0/svc-1:http".into(), "10.244.0.1".into()))
    );
    assert_eq!(warnings.len(), 1);
    // Renamed after the second (svc-1 goes, svc-5 comes): the second
    // has it, and the renamed one is warned about.
    cache.apply(&Change::DeleteService { ns: 0, n: 1 }, &mut at);
    cache.apply(&Change::PutService { ns: 0, n: 5, shape }, &mut at);
    let (holder, warnings, what) = map(&cache, &mut last);
    assert_eq!(
        holder,
        Some(("ns-0/svc-3:http".into(), "10.244.0.2".into()))
    );
    assert_eq!(
        warnings,
        ["TCP 10.96.0.2:80 is wanted by ns-0/svc-3:http and by ns-0/svc-5:http: kept ns-0/svc-3:http"]
    );
    assert_eq!(what.services, 2);
}
