//! The watches: kube-runtime's watcher of Services and of EndpointSlices
//! (lists then watches, resumes from the last resourceVersion after a
//! dropped connection or a watch timeout, asks for bookmarks, relists
//! after 410 Gone), each feeding a reflector store, each request through
//! the [`Gates`] (deadline, backoff, freshness).

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

use crate::api::{Failure, Gates};
use crate::pace::Source;

/// The watches' server-side timeout when none is set (kube-runtime's).
pub const WATCH_TIMEOUT: u32 = 290;

/// How the watches list and watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    /// The watches' server-side timeout, in seconds (`None`: [`WATCH_TIMEOUT`]).
    pub timeout: Option<u32>,
    /// The page size of consistent lists (`None`: kube's 500).
    pub page_size: Option<u32>,
    /// Lists from the API server's watch cache (`resourceVersion=0`,
    /// whole), as client-go's first list; `false`: consistent lists in
    /// pages of `page_size`.
    pub list_from_cache: bool,
}

/// The annotation the EndpointSlice controller stamps with the time of the
/// change (a Pod's, a Service's) that made it write the slice, in
/// RFC 3339 with nanoseconds; kube-proxy's network programming duration
/// starts there.
pub const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// An object that changed (not one of a list), as the loop's observers
/// see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What happened, for the debug log: `applied EndpointSlice ns/name`.
    pub what: String,
    /// The object, `namespace/name`.
    pub key: String,
    /// For an object applied (not deleted), the time of the change that
    /// caused it, from its [`TRIGGER_TIME`] annotation when it has a
    /// valid one.
    pub trigger: Option<SystemTime>,
}

/// The time in an object's [`TRIGGER_TIME`] annotation, if it has one
/// that reads as RFC 3339 (a malformed one is ignored, as kube-proxy
/// ignores it).
pub fn trigger_time(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<SystemTime> {
    let text = meta.annotations.as_ref()?.get(TRIGGER_TIME)?;
    let at: jiff::Timestamp = text.parse().ok()?;
    Some(SystemTime::from(at))
}

/// A watch event, reduced to what the loop needs.
pub(crate) enum Seen {
    /// An object changed.
    Changed(Change),
    /// A (re)list began.
    ListStarted,
    /// A (re)list is complete: the store holds it.
    Listed,
    /// The watch failed; it will be retried.
    Failed(String),
}

/// The [`Change`] of `obj` of `kind`, applied (else deleted).
fn describe<K: kube::Resource>(applied: bool, kind: &str, obj: &K) -> Change {
    let meta = obj.meta();
    let key = format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("?")
    );
    let verb = if applied { "applied" } else { "deleted" };
    Change {
        what: format!("{verb} {kind} {key}"),
        key,
        trigger: if applied { trigger_time(meta) } else { None },
    }
}

pub(crate) fn reduce<K: kube::Resource>(
    kind: &str,
    item: Result<Event<K>, watcher::Error>,
) -> Seen {
    match item {
        Ok(Event::Apply(obj)) => Seen::Changed(describe(true, kind, &obj)),
        Ok(Event::Delete(obj)) => Seen::Changed(describe(false, kind, &obj)),
        Ok(Event::Init) => Seen::ListStarted,
        Ok(Event::InitApply(_)) => Seen::ListStarted,
        Ok(Event::InitDone) => Seen::Listed,
        Err(e) => Seen::Failed(e.to_string()),
    }
}

/// The annotation `kubectl apply` leaves: the whole object again, as JSON.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What the store keeps of an object: what the mapping reads and no more
/// (as client-go's transforms strip what an informer's users never read:
/// a store holds every object of its kind for as long as it runs). Of
/// the metadata, the namespace, the name, the labels and the annotations
/// but the [`LAST_APPLIED`] one (the whole object again, often more than
/// half of an object's size on a real cluster, as `managedFields` is,
/// which goes with the rest: uid, resourceVersion, timestamps, owners,
/// finalizers); the mapping reads the scheduler's annotations, the
/// loop the trigger time's. Of a Service, all but its selector and its
/// status's conditions; of an EndpointSlice, all but each endpoint's
/// `targetRef` (a whole object reference per Pod), `hostname` and
/// `deprecatedTopology`.
pub trait Prune: kube::Resource {
    /// Leaves in `self` what the store keeps.
    fn prune(&mut self);
}

fn prune_meta(meta: &mut ObjectMeta) {
    let mut annotations = meta.annotations.take();
    if let Some(a) = annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        labels: meta.labels.take(),
        annotations: annotations.filter(|a| !a.is_empty()),
        ..ObjectMeta::default()
    };
}

impl Prune for core::Service {
    fn prune(&mut self) {
        prune_meta(&mut self.metadata);
        if let Some(spec) = self.spec.as_mut() {
            spec.selector = None;
        }
        if let Some(status) = self.status.as_mut() {
            status.conditions = None;
        }
    }
}

impl Prune for discovery::EndpointSlice {
    fn prune(&mut self) {
        prune_meta(&mut self.metadata);
        for ep in &mut self.endpoints {
            ep.target_ref = None;
            ep.hostname = None;
            ep.deprecated_topology = None;
        }
    }
}

/// [`Prune::prune`], as the watcher's `modify` takes it.
pub fn prune<K: Prune>(obj: &mut K) {
    obj.prune();
}

/// A watch of one kind into a store: its events, reduced, each reported
/// to the `gates` (which pace every request: kube-runtime's own backoff
/// is not used).
pub(crate) fn watch<K>(
    client: &Client,
    options: &WatchOptions,
    source: Source,
    gates: Arc<Gates>,
) -> (Store<K>, impl Stream<Item = Seen>)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Prune
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    // Bookmarks are asked for (kube-runtime's default), so that a
    // reconnect resumes from a recent resourceVersion, rarely a relist.
    let mut config = watcher::Config::default().timeout(options.timeout.unwrap_or(WATCH_TIMEOUT));
    if let Some(n) = options.page_size {
        config = config.page_size(n);
    }
    if options.list_from_cache {
        // kube leaves resourceVersion=0 out of a list with a limit.
        config = config.any_semantic();
        config.page_size = None;
    }
    let api: Api<K> = Api::all(client.clone());
    let kind = K::kind(&()).into_owned();
    let objects = watcher::watcher(api, config).modify(prune::<K>);
    let stream = reflector::reflector(writer, objects).map(move |item| {
        match &item {
            Ok(Event::Init) => {}
            Ok(Event::InitApply(_)) => gates.fresh(source),
            Ok(Event::InitDone) => gates.succeeded(source, false),
            Ok(Event::Apply(_) | Event::Delete(_)) => gates.succeeded(source, true),
            Err(e) => gates.failed(source, Failure::of(e)),
        }
        reduce(&kind, item)
    });
    (reader, stream)
}

/// The objects of both stores (shared, not copied).
pub(crate) struct Cache {
    /// The Services.
    pub(crate) services: Vec<Arc<core::Service>>,
    /// The EndpointSlices.
    pub(crate) slices: Vec<Arc<discovery::EndpointSlice>>,
}

pub(crate) fn objects(
    services: &Store<core::Service>,
    slices: &Store<discovery::EndpointSlice>,
) -> Cache {
    Cache {
        services: services.state(),
        slices: slices.state(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Service as `kubectl apply` and server-side apply leave it.
    fn applied() -> core::Service {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "web",
                "namespace": "shop",
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"v1\",\"kind\":\"Service\"}",
                    "ipvsadm-rs.io/scheduler": "wlc",
                },
                "managedFields": [{
                    "manager": "kubectl-client-side-apply",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:ports": {}}},
                }],
            },
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]},
        }))
        .expect("a Service")
    }

    #[test]
    fn the_store_keeps_what_the_mapping_reads_without_managed_fields() {
        let mut svc = applied();
        assert!(svc.metadata.managed_fields.is_some());
        prune(&mut svc);
        assert_eq!(svc.metadata.managed_fields, None);
        let annotations = svc.metadata.annotations.clone().expect("annotations");
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            [crate::mapping::scheduling::SCHEDULER]
        );
        assert_eq!(svc.spec, applied().spec);
        let size = |s: &core::Service| serde_json::to_vec(s).map(|v| v.len()).unwrap_or(0);
        assert!(size(&svc) < size(&applied()));
    }

    /// What the store keeps maps as the objects as a cluster sends them:
    /// the real dumps (with `managedFields`, uids, `targetRef`s,
    /// selectors), mapped whole and pruned, give the same table.
    #[test]
    fn pruned_objects_map_as_the_cluster_sent_them() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dumps");
        let mut dumps = 0;
        for entry in std::fs::read_dir(&dir).expect("the dumps") {
            let path = entry.expect("a dump").path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a dump");
            let whole = crate::mapping::read_objects(&text).expect("a dump's objects");
            let mut pruned = whole.clone();
            pruned.services.iter_mut().for_each(prune);
            pruned.slices.iter_mut().for_each(prune);
            let zone = whole
                .slices
                .iter()
                .flat_map(|s| &s.endpoints)
                .find_map(|e| e.zone.clone());
            for (name, zone) in [(Some("node-a"), zone), (None, None)] {
                let node = crate::mapping::Node {
                    ips: vec!["192.168.49.2".parse().expect("an address")],
                    name: name.map(str::to_owned),
                    zone,
                    scheduler: "rr".to_owned(),
                };
                let want = crate::mapping::map(&whole, &node);
                assert!(!want.desired.is_empty(), "{}", path.display());
                assert_eq!(
                    crate::mapping::map(&pruned, &node),
                    want,
                    "{}",
                    path.display()
                );
            }
            let slices = &pruned.slices;
            assert!(slices.iter().all(|s| s.metadata.uid.is_none()
                && s.metadata.managed_fields.is_none()
                && s.endpoints.iter().all(|e| e.target_ref.is_none())));
            assert!(pruned
                .services
                .iter()
                .all(|s| s.metadata.resource_version.is_none()
                    && s.spec.as_ref().is_none_or(|spec| spec.selector.is_none())));
            dumps += 1;
        }
        assert!(dumps >= 4, "{dumps} dumps in {}", dir.display());
    }

    #[test]
    fn an_object_with_only_the_applied_annotation_keeps_none() {
        let mut svc = applied();
        if let Some(a) = svc.metadata.annotations.as_mut() {
            a.retain(|k, _| k == LAST_APPLIED);
        }
        prune(&mut svc);
        assert_eq!(svc.metadata.annotations, None);
    }
}
