//! The live mode's own metrics (`--metrics-bind-address ADDR:PORT`):
//! kube-proxy's names where this proxy has a counterpart, ours beside
//! them, served as kube-proxy's metrics server serves them (`/metrics`,
//! `/proxyMode`, `/healthz`) on the crate's one HTTP server.
//!
//! kube-proxy's (pkg/proxy/metrics/metrics.go, same types, help, buckets):
//! - `kubeproxy_sync_proxy_rules_duration_seconds`: every sync, exponential
//!   buckets 1 ms to 16.384 s;
//! - `kubeproxy_sync_proxy_rules_last_timestamp_seconds`: the last sync
//!   that succeeded; `..._last_queued_timestamp_seconds`: the last change
//!   that asked for one;
//! - `kubeproxy_network_programming_duration_seconds` (kube-proxy's 80
//!   buckets, 0.25 s to 5 min): for each EndpointSlice change, from the
//!   change that caused it to the end of the sync that wrote it, as
//!   kube-proxy measures it: from the slice's
//!   `endpoints.kubernetes.io/last-change-trigger-time` (the EndpointSlice
//!   controller's clock: the Pod's or Service's change, so the
//!   controller's and the API server's share count), one observation per
//!   trigger time seen since the last sync (at most [`MAX_TRIGGERS`] a
//!   slice), none older than this process (kube-proxy's rule). A slice
//!   without the annotation (written by hand, or by a controller that
//!   does not stamp it) is measured from its watch event's arrival here;
//!   a trigger time ahead of this node's clock counts as 0;
//! - `kubeproxy_sync_proxy_rules_{service,endpoint}_changes_{pending,total}`:
//!   the objects changed since the last sync began (an object changed
//!   twice is one), and every change. The objects of a list (the first,
//!   or a relist) are not counted (kube-proxy's informers count them as changes);
//! - `kubeproxy_proxy_healthz_total{code}`, `kubeproxy_proxy_livez_total{code}`:
//!   the health endpoint's answers;
//! - `kubeproxy_sync_proxy_rules_nftables_sync_failures_total`: syncs whose
//!   packet-path write failed; `..._nftables_cleanup_failures_total`, always
//!   0 (the packet path is one table replaced or edited whole: no stale
//!   chains to clean up).
//!
//! Ours (`ipvs_k8s_`): syncs by result and the failures in a row (the
//! sync's backoff), IPVS writes by kind and the refused ones, the
//! disowned and conflicting services of the last sync, and per resource
//! the API requests (lists, watches), their failures by class, the
//! failures in a row and the backoff left.
//!
//! One lock covers the registry and every update of one change or one
//! sync, and a scrape encodes under it: a scrape sees a sync whole or
//! not at all.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use http::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, linear_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use super::health::ProbeCounter;
use super::sync_loop::{Observer, SyncReport};
use super::watch::Change;
use crate::api::Gates;
use crate::pace::Source;
use crate::serve::{serve, Limits};

/// The `Content-Type` of a scrape (Prometheus's text format 0.0.4).
pub const CONTENT_TYPE_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// What `/proxyMode` answers: kube-proxy's name of the mode whose table
/// this proxy writes.
pub const PROXY_MODE: &str = "ipvs";

/// A label set of one pair.
type Labels = Vec<(&'static str, String)>;

/// The metrics themselves (each an `Arc` inside: the registry holds
/// clones).
struct Handles {
    sync_duration: Histogram,
    last_timestamp: Gauge<f64, AtomicU64>,
    last_queued: Gauge<f64, AtomicU64>,
    network_programming: Histogram,
    endpoint_pending: Gauge,
    endpoint_total: Counter,
    service_pending: Gauge,
    service_total: Counter,
    healthz: Family<Labels, Counter>,
    livez: Family<Labels, Counter>,
    nft_sync_failures: Counter,
    syncs: Family<Labels, Counter>,
    sync_failing: Gauge,
    writes: Family<Labels, Counter>,
    write_failures: Counter,
    disowned: Gauge,
    conflicts: Gauge,
}

/// The trigger times kept per EndpointSlice between two syncs: a slice
/// rewritten more often than that in one sync's wait keeps its first
/// ones (the longest durations).
pub const MAX_TRIGGERS: usize = 16;

/// An EndpointSlice's changes since the last sync began: when the first
/// arrived, and the trigger times they carried.
#[derive(Debug, Clone)]
struct SliceChanges {
    arrived: Instant,
    triggers: Vec<SystemTime>,
}

/// The changes not yet synced: each object's key and when its first
/// change since the last sync began arrived.
#[derive(Default)]
struct Pending {
    services: BTreeMap<String, Instant>,
    slices: BTreeMap<String, SliceChanges>,
    /// The EndpointSlice changes the running sync covers.
    in_sync: Vec<SliceChanges>,
}

struct Inner {
    registry: Registry,
    pending: Pending,
}

/// The live mode's metrics: fed by the loop as an [`Observer`] (through
/// [`Observed`]) and by the health endpoint
/// ([`HealthState::with_metrics`](super::health::HealthState::with_metrics)),
/// read by [`ProxyMetrics::scrape`].
pub struct ProxyMetrics {
    inner: Mutex<Inner>,
    m: Handles,
    /// When these metrics began: trigger times before it are not measured.
    started: SystemTime,
}

impl fmt::Debug for ProxyMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyMetrics").finish_non_exhaustive()
    }
}

/// kube-proxy's buckets of the network programming duration: 0.25 s and
/// 0.5 s, each second to 59 s, each 5 s to 115 s, each 30 s to 5 min.
fn network_programming_buckets() -> Vec<f64> {
    linear_buckets(0.25, 0.25, 2)
        .chain(linear_buckets(1.0, 1.0, 59))
        .chain(linear_buckets(60.0, 5.0, 12))
        .chain(linear_buckets(120.0, 30.0, 7))
        .collect()
}

/// Seconds since the Unix epoch, now.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl ProxyMetrics {
    /// The metrics of a live run whose API requests go through `gates`.
    pub fn new(gates: Option<Arc<Gates>>) -> Arc<Self> {
        let m = Handles {
            sync_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            last_timestamp: Gauge::default(),
            last_queued: Gauge::default(),
            network_programming: Histogram::new(network_programming_buckets()),
            endpoint_pending: Gauge::default(),
            endpoint_total: Counter::default(),
            service_pending: Gauge::default(),
            service_total: Counter::default(),
            healthz: Family::default(),
            livez: Family::default(),
            nft_sync_failures: Counter::default(),
            syncs: Family::default(),
            sync_failing: Gauge::default(),
            writes: Family::default(),
            write_failures: Counter::default(),
            disowned: Gauge::default(),
            conflicts: Gauge::default(),
        };
        let mut r = Registry::default();
        r.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            m.sync_duration.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            m.last_timestamp.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "The last time a sync of proxy rules was queued",
            m.last_queued.clone(),
        );
        r.register(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            m.network_programming.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
            "Pending proxy rules Endpoint changes",
            m.endpoint_pending.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_endpoint_changes",
            "Cumulative proxy rules Endpoint changes",
            m.endpoint_total.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_service_changes_pending",
            "Pending proxy rules Service changes",
            m.service_pending.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_service_changes",
            "Cumulative proxy rules Service changes",
            m.service_total.clone(),
        );
        r.register(
            "kubeproxy_proxy_healthz",
            "Cumulative proxy healthz HTTP status",
            m.healthz.clone(),
        );
        r.register(
            "kubeproxy_proxy_livez",
            "Cumulative proxy livez HTTP status",
            m.livez.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_nftables_sync_failures",
            "Cumulative proxy nftables sync failures",
            m.nft_sync_failures.clone(),
        );
        r.register(
            "kubeproxy_sync_proxy_rules_nftables_cleanup_failures",
            "Cumulative proxy nftables cleanup failures",
            Counter::<u64>::default(),
        );
        r.register(
            "ipvs_k8s_syncs",
            "Syncs done, by result (ok: the objects mapped and every write went through)",
            m.syncs.clone(),
        );
        r.register(
            "ipvs_k8s_sync_failures_in_a_row",
            "Syncs failed since the last that succeeded (the sync's backoff)",
            m.sync_failing.clone(),
        );
        r.register(
            "ipvs_k8s_writes",
            "IPVS writes sent, by kind",
            m.writes.clone(),
        );
        r.register(
            "ipvs_k8s_write_failures",
            "IPVS writes the kernel refused",
            m.write_failures.clone(),
        );
        r.register(
            "ipvs_k8s_disowned_services",
            "Virtual services it created that another tool changed, left alone (last sync)",
            m.disowned.clone(),
        );
        r.register(
            "ipvs_k8s_conflicting_services",
            "Virtual services wanted but held by another tool (last sync)",
            m.conflicts.clone(),
        );
        if let Some(gates) = gates {
            r.register_collector(Box::new(Api(gates)));
        }
        Arc::new(ProxyMetrics {
            inner: Mutex::new(Inner {
                registry: r,
                pending: Pending::default(),
            }),
            m,
            started: SystemTime::now(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The scrape: every metric in Prometheus's text format, as one
    /// consistent view.
    pub fn scrape(&self) -> Result<String, fmt::Error> {
        let inner = self.lock();
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &inner.registry)?;
        Ok(text)
    }

    /// The health endpoint answered `code` to a probe of `/livez`
    /// (`livez`) or of `/healthz`.
    pub fn probed(&self, livez: bool, code: u16) {
        let _inner = self.lock();
        let family = if livez {
            &self.m.livez
        } else {
            &self.m.healthz
        };
        family
            .get_or_create(&vec![("code", code.to_string())])
            .inc();
    }

    /// An object of `source` changed.
    pub fn changed(&self, source: Source, change: &Change) {
        let mut inner = self.lock();
        let now = Instant::now();
        let p = &mut inner.pending;
        let (pending, gauge, total) = match source {
            Source::Services => {
                p.services.entry(change.key.clone()).or_insert(now);
                (
                    p.services.len(),
                    &self.m.service_pending,
                    &self.m.service_total,
                )
            }
            Source::Slices => {
                let slice = p
                    .slices
                    .entry(change.key.clone())
                    .or_insert_with(|| SliceChanges {
                        arrived: now,
                        triggers: Vec::new(),
                    });
                // kube-proxy's rule: a change from before this process
                // began is not this process's to measure.
                let trigger = change.trigger.filter(|t| *t >= self.started);
                if let Some(t) = trigger {
                    if slice.triggers.len() < MAX_TRIGGERS {
                        slice.triggers.push(t);
                    }
                }
                (
                    p.slices.len(),
                    &self.m.endpoint_pending,
                    &self.m.endpoint_total,
                )
            }
        };
        gauge.set(i64::try_from(pending).unwrap_or(i64::MAX));
        total.inc();
        self.m.last_queued.set(unix_now());
    }

    /// A sync starts: the changes pending are the ones it covers.
    pub fn sync_started(&self) {
        let mut inner = self.lock();
        let p = &mut inner.pending;
        p.in_sync = std::mem::take(&mut p.slices).into_values().collect();
        p.services.clear();
        self.m.service_pending.set(0);
        self.m.endpoint_pending.set(0);
    }

    /// A sync is done: its duration, result, writes; the network
    /// programming duration of the EndpointSlice changes it covered, when
    /// it succeeded.
    pub fn synced(&self, report: &SyncReport) {
        let mut inner = self.lock();
        let now = Instant::now();
        let m = &self.m;
        m.sync_duration.observe(report.elapsed.as_secs_f64());
        let result = if report.ok { "ok" } else { "failed" };
        m.syncs
            .get_or_create(&vec![("result", result.to_owned())])
            .inc();
        for (kind, n) in &report.sent_by_kind {
            m.writes
                .get_or_create(&vec![("kind", (*kind).to_owned())])
                .inc_by(*n as u64);
        }
        m.write_failures.inc_by(report.failed as u64);
        if report.packet_failed {
            m.nft_sync_failures.inc();
        }
        m.disowned
            .set(i64::try_from(report.disowned).unwrap_or(i64::MAX));
        m.conflicts
            .set(i64::try_from(report.conflicts).unwrap_or(i64::MAX));
        let covered = std::mem::take(&mut inner.pending.in_sync);
        if report.ok {
            m.sync_failing.set(0);
            m.last_timestamp.set(unix_now());
            let wall = SystemTime::now();
            for slice in covered {
                if slice.triggers.is_empty() {
                    let took = now.saturating_duration_since(slice.arrived);
                    m.network_programming.observe(took.as_secs_f64());
                }
                for t in slice.triggers {
                    let took = wall.duration_since(t).unwrap_or_default();
                    m.network_programming.observe(took.as_secs_f64());
                }
            }
        } else {
            m.sync_failing.inc();
        }
    }
}

/// The collector of the API requests' gates, read at each scrape.
#[derive(Debug)]
struct Api(Arc<Gates>);

impl Collector for Api {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let stats = self.0.stats(Instant::now());
        let mut family = encoder.encode_descriptor(
            "ipvs_k8s_api_requests",
            "Requests to the API server, by resource and verb (list, watch).",
            None,
            MetricType::Counter,
        )?;
        for s in &stats {
            for (verb, n) in [("list", s.lists), ("watch", s.watches)] {
                let labels = [("resource", s.resource), ("verb", verb)];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "ipvs_k8s_api_failures",
            "Failed requests to the API server, by resource and class.",
            None,
            MetricType::Counter,
        )?;
        for s in &stats {
            for (class, n) in &s.failures {
                let labels = [("resource", s.resource), ("class", class)];
                ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "ipvs_k8s_api_failures_in_a_row",
            "Failures in a row of a resource's requests (0: it works).",
            None,
            MetricType::Gauge,
        )?;
        for s in &stats {
            let labels = [("resource", s.resource)];
            ConstGauge::new(i64::from(s.failing)).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "ipvs_k8s_api_backoff_seconds",
            "How long a resource's next request waits for the backoff.",
            None,
            MetricType::Gauge,
        )?;
        for s in &stats {
            let labels = [("resource", s.resource)];
            ConstGauge::new(s.backoff.as_secs_f64()).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// An observer of the loop that feeds `metrics`, then hands each
/// report to `then` (the health endpoint's and the health-check ports'
/// observer).
pub struct Observed<F> {
    /// The metrics fed.
    pub metrics: Arc<ProxyMetrics>,
    /// The observer of the reports beside them.
    pub then: F,
}

impl ProbeCounter for ProxyMetrics {
    fn probed(&self, livez: bool, code: u16) {
        ProxyMetrics::probed(self, livez, code)
    }
}

impl<F: FnMut(&SyncReport)> Observer for Observed<F> {
    fn changed(&mut self, source: Source, change: &Change) {
        self.metrics.changed(source, change);
    }

    fn sync_started(&mut self) {
        self.metrics.sync_started();
    }

    fn synced(&mut self, report: &SyncReport) {
        self.metrics.synced(report);
        (self.then)(report);
    }
}

/// A text answer that closes the connection, `nosniff` as kube-proxy's.
fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    // Tells our own kube-proxy detection that this is not kube-proxy.
    headers.insert(
        http::header::SERVER,
        HeaderValue::from_static(crate::node::kube_proxy::OUR_SERVER),
    );
    response
}

/// The metrics server's answer to `req`, as kube-proxy's metrics server
/// answers: `/metrics` the scrape, `/proxyMode` the mode, `/healthz`
/// `ok` (a liveness ping of the server; the proxy's health is on
/// `--healthz`), 404 elsewhere.
pub fn answer(metrics: &ProxyMetrics, req: &Request<Incoming>) -> Response<String> {
    answer_path(metrics, req.uri().path())
}

fn answer_path(metrics: &ProxyMetrics, path: &str) -> Response<String> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    match path {
        "/metrics" => match metrics.scrape() {
            Ok(body) => text(StatusCode::OK, CONTENT_TYPE_TEXT, body),
            Err(_) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                PLAIN,
                "the scrape could not be encoded\n".to_owned(),
            ),
        },
        "/proxyMode" => text(StatusCode::OK, PLAIN, PROXY_MODE.to_owned()),
        "/healthz" => text(StatusCode::OK, PLAIN, "ok".to_owned()),
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "404 page not found\n".to_owned(),
        ),
    }
}

/// How long a connection to the metrics server may last (as
/// `ipvsadm-rs --metrics`'s: a scrape is small here, but a slow client
/// must not be cut mid-answer by the health probes' 5 s).
pub const LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

/// Serves the metrics server on `listener` until the task is dropped.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<ProxyMetrics>, limits: Limits) {
    serve(listener, limits, move |req| answer(&metrics, req)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change without a trigger time.
    fn change(what: &str) -> Change {
        Change {
            what: what.to_owned(),
            key: what.rsplit(' ').next().unwrap_or(what).to_owned(),
            trigger: None,
        }
    }

    #[test]
    fn the_buckets_are_kube_proxys() {
        let b: Vec<f64> = exponential_buckets(0.001, 2.0, 15).collect();
        assert_eq!(b.first(), Some(&0.001));
        assert_eq!(b.last(), Some(&16.384));
        let n = network_programming_buckets();
        assert_eq!(n.len(), 80);
        assert_eq!(&n[..3], &[0.25, 0.5, 1.0]);
        assert_eq!(n[60], 59.0);
        assert_eq!(n[61], 60.0);
        assert_eq!(n.last(), Some(&300.0));
    }

    #[test]
    fn a_change_counted_twice_is_pending_once() {
        let m = ProxyMetrics::new(None);
        m.changed(Source::Services, &change("applied Service default/web"));
        m.changed(Source::Services, &change("applied Service default/web"));
        m.changed(
            Source::Slices,
            &change("applied EndpointSlice default/web-abcde"),
        );
        let text = m.scrape().unwrap();
        assert!(text.contains("kubeproxy_sync_proxy_rules_service_changes_pending 1\n"));
        assert!(text.contains("kubeproxy_sync_proxy_rules_service_changes_total 2\n"));
        assert!(text.contains("kubeproxy_sync_proxy_rules_endpoint_changes_pending 1\n"));
        m.sync_started();
        let text = m.scrape().unwrap();
        assert!(text.contains("kubeproxy_sync_proxy_rules_service_changes_pending 0\n"));
        assert!(text.contains("kubeproxy_sync_proxy_rules_service_changes_total 2\n"));
    }

    /// A scrape after one change, one sync and two probes, read back by
    /// prometheus-parse: each series name and its labels.
    fn parsed_scrape() -> std::collections::HashMap<String, Vec<String>> {
        use crate::api::Deadlines;
        use crate::log::Log;
        use crate::pace::Schedule;
        let gates = Gates::new(
            Schedule::default(),
            Deadlines::default(),
            290,
            Log { verbose: false },
        );
        gates.failed(Source::Services, crate::api::Failure::Status(500));
        let m = ProxyMetrics::new(Some(gates));
        m.changed(Source::Services, &change("applied Service default/web"));
        m.changed(
            Source::Slices,
            &change("applied EndpointSlice default/web-abcde"),
        );
        m.sync_started();
        m.synced(&ok_report());
        m.probed(false, 200);
        m.probed(true, 503);
        let text = m.scrape().unwrap();
        let samples = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .unwrap()
            .samples;
        let mut series: std::collections::HashMap<String, Vec<String>> = Default::default();
        for s in samples {
            series
                .entry(s.metric.clone())
                .or_default()
                .extend(s.labels.keys().cloned());
        }
        series
    }

    /// A sync that succeeded, wrote one service and one real server.
    fn ok_report() -> SyncReport {
        SyncReport {
            number: 1,
            resync: false,
            code: 0,
            ok: true,
            planned: 2,
            sent: 2,
            failed: 0,
            services: 1,
            objects: (1, 1),
            elapsed: std::time::Duration::from_millis(3),
            draining: 0,
            phases: crate::sync::Phases::default(),
            health_check_node_ports: Default::default(),
            packet: None,
            packet_failed: false,
            sent_by_kind: [("add_service", 1), ("add_destination", 1)].into(),
            disowned: 0,
            conflicts: 0,
        }
    }

    /// An EndpointSlice applied, seen through the watch's reduction, with
    /// `annotation` as its trigger time.
    fn slice_applied(name: &str, annotation: Option<String>) -> Change {
        use k8s_openapi::api::discovery::v1::EndpointSlice;
        use kube::runtime::watcher::Event;
        let mut slice = EndpointSlice::default();
        slice.metadata.namespace = Some("default".into());
        slice.metadata.name = Some(name.into());
        slice.metadata.annotations =
            annotation.map(|t| [(crate::live::watch::TRIGGER_TIME.to_owned(), t)].into());
        match crate::live::watch::reduce("EndpointSlice", Ok(Event::Apply(slice))) {
            crate::live::watch::Seen::Changed(c) => c,
            _ => panic!("an applied slice is a change"),
        }
    }

    /// The count of the network programming histogram's bucket `le`.
    fn programming_bucket(text: &str, le: &str) -> f64 {
        let samples = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .unwrap()
            .samples;
        samples
            .iter()
            .find(|s| s.metric == "kubeproxy_network_programming_duration_seconds")
            .and_then(|s| match &s.value {
                prometheus_parse::Value::Histogram(h) => h
                    .iter()
                    .find(|b| (b.less_than - le.parse::<f64>().unwrap()).abs() < 1e-9)
                    .map(|b| b.count),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn the_controllers_trigger_time_reads_as_kube_proxy_reads_it() {
        // The EndpointSlice controller writes RFC 3339 with nanoseconds.
        let c = slice_applied("a", Some("2019-01-29T11:32:13.123456789Z".into()));
        let want = std::time::UNIX_EPOCH + std::time::Duration::new(1_548_761_533, 123_456_789);
        assert_eq!(c.trigger, Some(want));
        assert_eq!(c.key, "default/a");
        // Without nanoseconds, with an offset, malformed, deleted.
        let c = slice_applied("a", Some("2019-01-29T12:32:13+01:00".into()));
        assert_eq!(
            c.trigger,
            Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_548_761_533))
        );
        assert_eq!(slice_applied("a", Some("yesterday".into())).trigger, None);
        assert_eq!(slice_applied("a", None).trigger, None);
    }

    #[test]
    fn network_programming_starts_at_the_trigger_time() {
        let mut m = ProxyMetrics::new(None);
        // As if this process began a minute ago.
        Arc::get_mut(&mut m).unwrap().started -= std::time::Duration::from_secs(60);
        let ago = |secs: i64| {
            (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs)).to_string()
        };
        // Two changes of one slice 40 s and 35 s ago: two observations
        // above 30 s; a slice without the annotation: one from its
        // arrival; one whose trigger is from before this process began:
        // from its arrival too.
        m.changed(Source::Slices, &slice_applied("web-1", Some(ago(40))));
        m.changed(Source::Slices, &slice_applied("web-1", Some(ago(35))));
        m.changed(Source::Slices, &slice_applied("web-2", None));
        m.changed(
            Source::Slices,
            &slice_applied("web-3", Some("2019-01-29T11:32:13Z".into())),
        );
        m.sync_started();
        m.synced(&ok_report());
        let text = m.scrape().unwrap();
        assert!(
            text.contains("kubeproxy_network_programming_duration_seconds_count 4\n"),
            "{text}"
        );
        assert_eq!(programming_bucket(&text, "0.25"), 2.0, "{text}");
        assert_eq!(programming_bucket(&text, "30"), 2.0, "{text}");
        assert_eq!(programming_bucket(&text, "300"), 4.0, "{text}");
    }

    /// Every series of the proxy that deploy/grafana-dashboard.json
    /// queries is in a scrape (as the parser reads it), with the labels
    /// its legends print (or `instance`, which Prometheus adds).
    #[test]
    fn the_grafana_dashboard_queries_what_the_proxy_serves() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/grafana-dashboard.json"
        );
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let series = parsed_scrape();
        let mut checked = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap();
                let names: Vec<&str> = expr
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| w.starts_with("kubeproxy_") || w.starts_with("ipvs_k8s_"))
                    .collect();
                if names.is_empty() {
                    continue;
                }
                for name in &names {
                    // A histogram's buckets are its series to the parser.
                    let base = name.strip_suffix("_bucket").unwrap_or(name);
                    let labels = series
                        .get(base)
                        .unwrap_or_else(|| panic!("{expr}: no series {base} in a scrape"));
                    let legend = target["legendFormat"].as_str().unwrap_or_default();
                    for label in legend
                        .split("{{")
                        .skip(1)
                        .filter_map(|s| s.split("}}").next())
                    {
                        assert!(
                            label == "instance"
                                || labels.iter().any(|l| l == label)
                                || names.iter().any(|n| {
                                    series
                                        .get(n.strip_suffix("_bucket").unwrap_or(n))
                                        .is_some_and(|l| l.iter().any(|l| l == label))
                                }),
                            "{expr}: legend label {label} is on none of {names:?}"
                        );
                    }
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 20, "the dashboard's queries of the proxy");
    }

    #[test]
    fn the_metrics_server_answers_as_kube_proxys() {
        let m = ProxyMetrics::new(None);
        let r = answer_path(&m, "/proxyMode");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.body(), "ipvs");
        assert_eq!(answer_path(&m, "/healthz").body(), "ok");
        assert_eq!(answer_path(&m, "/nope").status(), StatusCode::NOT_FOUND);
        let r = answer_path(&m, "/metrics");
        assert_eq!(
            r.headers().get(CONTENT_TYPE).unwrap(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }
}
