//! The live mode's HTTP serving: the health endpoint (`--healthz`) and
//! the health-check node ports of `externalTrafficPolicy: Local`
//! Services, both on hyper's HTTP/1 server.
//!
//! Both are served by the one HTTP server of the crate, [`crate::serve`]
//! (one task per connection, bounded by [`Limits`], `Connection: close`),
//! which `ipvsadm-rs --metrics` serves on too.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use http::{Response, StatusCode};
use tokio::net::TcpListener;

use crate::api::Gates;
use crate::serve::serve;
pub use crate::serve::{Limits, HEADER_READ, LIFETIME, MAX_CONNECTIONS};

/// The last sync as the health endpoint shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastSync {
    /// 1 for the first sync, then counting.
    pub number: u64,
    /// Whether it succeeded.
    pub ok: bool,
    /// Its status (0 done, 1 a conflict or failed write, 2 nothing written).
    pub code: i32,
    /// The writes sent.
    pub writes: usize,
    /// The writes refused.
    pub failed_writes: usize,
    /// The virtual services wanted.
    pub virtual_services: usize,
    /// How long it took.
    pub elapsed: Duration,
}

/// The health endpoint's view of the loop.
#[derive(Debug, Clone, Default)]
struct Health {
    /// How old the data may get before the answer is 503.
    stale_after: Duration,
    /// How fresh the watches' data is.
    gates: Option<Arc<Gates>>,
    last_success: Option<jiff::Timestamp>,
    last_success_at: Option<Instant>,
    last: Option<LastSync>,
    /// Where the answers are counted (`kubeproxy_proxy_healthz_total`).
    metrics: Option<Arc<dyn ProbeCounter>>,
}

/// What counts the health endpoint's answers (the live mode's metrics,
/// `super::metrics::ProxyMetrics`): kept apart so that the health
/// endpoint does not import the metrics that import the sync loop.
pub trait ProbeCounter: Send + Sync + std::fmt::Debug {
    /// One answer: of `/livez` (else `/healthz`), with HTTP status `code`.
    fn probed(&self, livez: bool, code: u16);
}

/// The state the health endpoint answers from, shared between the sync
/// loop (which records each sync) and the server.
#[derive(Debug, Clone)]
pub struct HealthState(Arc<Mutex<Health>>);

impl HealthState {
    /// A state before any sync: unhealthy. It turns unhealthy again when
    /// the last good sync, or the data of the watches of `gates`, is
    /// older than `stale_after`.
    pub fn new(stale_after: Duration, gates: Option<Arc<Gates>>) -> Self {
        HealthState(Arc::new(Mutex::new(Health {
            stale_after,
            gates,
            ..Health::default()
        })))
    }

    /// The same state, its answers counted in `metrics`
    /// (`kubeproxy_proxy_healthz_total{code}`,
    /// `kubeproxy_proxy_livez_total{code}`).
    pub fn with_metrics(self, metrics: Arc<dyn ProbeCounter>) -> Self {
        self.lock().metrics = Some(metrics);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a sync done now.
    pub fn record(&self, last: LastSync) {
        let mut h = self.lock();
        if last.ok {
            h.last_success = Some(jiff::Timestamp::now());
            h.last_success_at = Some(Instant::now());
        }
        h.last = Some(last);
    }

    /// Whether the endpoint answers 200 now.
    pub fn healthy(&self) -> bool {
        freshness(&self.lock(), Instant::now()).0
    }

    /// The answer to `path`: `/livez` as kube-proxy's liveness probe
    /// (the same as `/healthz` here: kube-proxy's differ only when its
    /// Node is being deleted, which this proxy does not watch); any
    /// other path is `/healthz`, as before.
    fn answer(&self, path: &str) -> Response<String> {
        let h = self.lock();
        let (status, body) = health_response(&h, Instant::now());
        if let Some(m) = &h.metrics {
            m.probed(path == "/livez", status.as_u16());
        }
        json_response(status, body, false)
    }
}

/// Whether the loop is healthy at `now`, and the age of the watches'
/// data (`None` without gates; `Some(None)`: no data yet).
fn freshness(h: &Health, now: Instant) -> (bool, Option<Option<Duration>>) {
    let age = h.gates.as_ref().map(|g| g.age(now));
    let data_fresh = match age {
        None => true,
        Some(Some(age)) => age <= h.stale_after,
        Some(None) => false,
    };
    let fresh = data_fresh
        && h.last_success_at
            .is_some_and(|at| now.saturating_duration_since(at) <= h.stale_after);
    (fresh, age)
}

/// The health endpoint's answer at `now`: healthy when a sync succeeded
/// within the staleness bound and the data of both watches is no older
/// than that (an open, answering watch is current; a failing one ages
/// from its last object, page, bookmark or clean end).
fn health_response(h: &Health, now: Instant) -> (StatusCode, String) {
    let (fresh, age) = freshness(h, now);
    let last = h.last.as_ref().map(|r| {
        serde_json::json!({
            "number": r.number,
            "ok": r.ok,
            "code": r.code,
            "writes": r.writes,
            "failedWrites": r.failed_writes,
            "virtualServices": r.virtual_services,
            "milliseconds": r.elapsed.as_millis() as u64,
        })
    });
    let now_utc = jiff::Timestamp::now();
    let body = serde_json::json!({
        // kube-proxy's three fields, for the tools that read them.
        "lastUpdated": h.last_success.map(|t| t.to_string()),
        "currentTime": now_utc.to_string(),
        "nodeEligible": true,
        "healthy": fresh,
        "dataAgeSeconds": age.flatten().map(|a| a.as_secs()),
        "lastSuccessfulSync": h.last_success.map(|t| t.to_string()),
        "lastSync": last,
    });
    let status = if fresh {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, format!("{body}\n"))
}

/// A JSON answer that closes the connection; `nosniff` as kube-proxy's
/// health-check ports send it.
fn json_response(status: StatusCode, body: String, nosniff: bool) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if nosniff {
        headers.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
    }
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Serves the health endpoint on `listener` until the task is dropped:
/// `GET /healthz` and `GET /livez` (any path, in fact) answer 200 with a
/// JSON body when healthy, 503 otherwise (see [`HealthState`]).
pub async fn serve_healthz(listener: TcpListener, state: HealthState, limits: Limits) {
    serve(listener, limits, move |req| state.answer(req.uri().path())).await
}

/// One Service's health-check node port, as the sync loop publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckService {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// Its ready endpoints on this node.
    pub local_endpoints: usize,
}

/// The health-check node ports to serve: `healthCheckNodePort` to its
/// Service, for every `externalTrafficPolicy: Local` Service.
pub type HealthCheckNodePorts = BTreeMap<u16, HealthCheckService>;

/// A health-check node port that could not be served.
#[derive(Debug)]
pub enum HealthCheckError {
    /// The port could not be bound (another process holds it, say); it
    /// is tried again at the next [`HealthCheckServers::publish`].
    Bind {
        /// The address and port.
        addr: SocketAddr,
        /// The Service it is for (`namespace/name`).
        service: String,
        /// The error of the bind.
        source: io::Error,
    },
}

impl fmt::Display for HealthCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthCheckError::Bind {
                addr,
                service,
                source,
            } => write!(
                f,
                "cannot serve the health-check node port of {service} on {addr}: {source}"
            ),
        }
    }
}

impl std::error::Error for HealthCheckError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HealthCheckError::Bind { source, .. } => Some(source),
        }
    }
}

/// One health-check node port being served.
struct PortServer {
    service: Arc<Mutex<HealthCheckService>>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// The servers of the health-check node ports, as kube-proxy's
/// `ServiceHealthServer`: a port opens when it appears in a
/// [`publish`](HealthCheckServers::publish)ed map and closes when it
/// goes; it answers 200 when its Service has a ready endpoint on this
/// node and the proxy is healthy, 503 otherwise, with kube-proxy's JSON
/// body. Dropping it closes every port.
pub struct HealthCheckServers {
    address: IpAddr,
    healthy: Arc<dyn Fn() -> bool + Send + Sync>,
    limits: Limits,
    open: BTreeMap<u16, PortServer>,
}

impl fmt::Debug for HealthCheckServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthCheckServers")
            .field("address", &self.address)
            .field("ports", &self.open.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl HealthCheckServers {
    /// Servers listening on `address` (`None`: every address of the node,
    /// IPv6 and IPv4, or IPv4 alone where IPv6 is off), whose answers
    /// tell `healthy()` (the proxy's own health: kube-proxy's
    /// `serviceProxyHealthy`).
    pub fn new(
        address: Option<IpAddr>,
        healthy: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Self {
        HealthCheckServers {
            address: address.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            healthy: Arc::new(healthy),
            limits: Limits::default(),
            open: BTreeMap::new(),
        }
    }

    /// The ports served, each with its local address.
    pub fn ports(&self) -> Vec<(u16, SocketAddr)> {
        self.open.iter().map(|(p, s)| (*p, s.addr)).collect()
    }

    /// Serves `ports` from now on: opens the new ones, closes those that
    /// went, updates the others' Service and endpoint count. A port that
    /// cannot be bound is returned as an error (the others are served)
    /// and tried again at the next call. Must be called within a tokio
    /// runtime.
    pub fn publish(&mut self, ports: &HealthCheckNodePorts) -> Vec<HealthCheckError> {
        self.open.retain(|port, server| {
            let keep = ports.contains_key(port);
            if !keep {
                server.task.abort();
            }
            keep
        });
        let mut errors = Vec::new();
        for (&port, service) in ports {
            if let Some(server) = self.open.get(&port) {
                *server.service.lock().unwrap_or_else(|p| p.into_inner()) = service.clone();
                continue;
            }
            match self.bind(port) {
                Ok(listener) => {
                    let addr = listener
                        .local_addr()
                        .unwrap_or(SocketAddr::new(self.address, port));
                    let shared = Arc::new(Mutex::new(service.clone()));
                    let (answering, healthy) = (shared.clone(), self.healthy.clone());
                    let task = tokio::spawn(serve(listener, self.limits, move |_| {
                        let service = answering.lock().unwrap_or_else(|p| p.into_inner()).clone();
                        service_health_response(&service, healthy())
                    }));
                    self.open.insert(
                        port,
                        PortServer {
                            service: shared,
                            addr,
                            task,
                        },
                    );
                }
                Err((addr, source)) => errors.push(HealthCheckError::Bind {
                    addr,
                    service: format!("{}/{}", service.namespace, service.name),
                    source,
                }),
            }
        }
        errors
    }

    /// A listener on the port: on the configured address; on IPv4's
    /// unspecified one when that is IPv6's and IPv6 is off.
    fn bind(&self, port: u16) -> Result<TcpListener, (SocketAddr, io::Error)> {
        let addr = SocketAddr::new(self.address, port);
        let std_listener = match std::net::TcpListener::bind(addr) {
            Err(e)
                if self.address == IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                    && e.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
            {
                let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
                std::net::TcpListener::bind(v4).map_err(|e| (v4, e))?
            }
            other => other.map_err(|e| (addr, e))?,
        };
        std_listener.set_nonblocking(true).map_err(|e| (addr, e))?;
        TcpListener::from_std(std_listener).map_err(|e| (addr, e))
    }
}

impl Drop for HealthCheckServers {
    fn drop(&mut self) {
        for server in self.open.values() {
            server.task.abort();
        }
    }
}

/// A health-check node port's answer, as kube-proxy's: 200 when the
/// Service has a local endpoint and the proxy is healthy, 503 otherwise;
/// its JSON body, tab-indented, without a final newline.
fn service_health_response(service: &HealthCheckService, proxy_healthy: bool) -> Response<String> {
    let status = if service.local_endpoints > 0 && proxy_healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let quoted = |s: &str| serde_json::Value::from(s).to_string();
    let body = format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": {},\n\t\t\"name\": {}\n\t}},\n\t\"localEndpoints\": {},\n\t\"serviceProxyHealthy\": {}\n}}",
        quoted(&service.namespace),
        quoted(&service.name),
        service.local_endpoints,
        proxy_healthy
    );
    json_response(status, body, true)
}

#[cfg(test)]
mod tests;
