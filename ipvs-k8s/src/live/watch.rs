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

/// What the store keeps of an object: all but its `managedFields` and
/// the [`LAST_APPLIED`] annotation, which nothing here reads and which
/// are often more than half of an object's size on a real cluster (the
/// memory kube-runtime's docs point to for a reflector). The other
/// annotations stay: the mapping reads the scheduler's and the trigger
/// time's.
pub fn prune<K: kube::Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
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
