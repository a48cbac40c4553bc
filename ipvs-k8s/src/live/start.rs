//! The live mode's start: the checks made before anything is written
//! (pre-flight), the cluster configuration and the client, the process's
//! limits and signals.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kube::config::{InferConfigError, KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};
use tokio::net::TcpListener;

use super::sync_loop::Settings;
use crate::api::{Gates, GatesLayer};
use crate::log::Log;
use crate::node;
use crate::Args;

/// Why the live mode could not start.
#[derive(Debug)]
pub enum StartError {
    /// The tokio runtime could not be built.
    Runtime(std::io::Error),
    /// The kubeconfig file given could not be read.
    ReadKubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: KubeconfigError,
    },
    /// A kubeconfig (the file given, or the context asked for) holds no
    /// usable configuration.
    Kubeconfig {
        /// The file or context named.
        what: String,
        /// Why.
        source: KubeconfigError,
    },
    /// No configuration was found (no kubeconfig, not in a cluster).
    NoConfig(InferConfigError),
    /// The client could not be made from the configuration.
    Client(kube::Error),
    /// The health endpoint's address could not be listened on.
    Healthz {
        /// The address of `--healthz`.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The metrics server's address could not be listened on.
    Metrics {
        /// The address of `--metrics-bind-address`.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Another check of the node refused the start (kube-proxy in IPVS
    /// mode running, say).
    Node(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Runtime(e) => write!(f, "cannot start the runtime: {e}"),
            StartError::ReadKubeconfig { path, source } => {
                write!(f, "cannot read kubeconfig {}: {source}", path.display())
            }
            StartError::Kubeconfig { what, source } => write!(f, "{what}: {source}"),
            StartError::NoConfig(e) => write!(f, "no cluster configuration found: {e}"),
            StartError::Client(e) => write!(f, "cannot make a Kubernetes client: {e}"),
            StartError::Healthz { addr, source } => {
                write!(f, "--healthz {addr}: cannot listen: {source}")
            }
            StartError::Metrics { addr, source } => {
                write!(f, "--metrics-bind-address {addr}: cannot listen: {source}")
            }
            StartError::Node(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Runtime(e) => Some(e),
            StartError::ReadKubeconfig { source, .. } | StartError::Kubeconfig { source, .. } => {
                Some(source)
            }
            StartError::NoConfig(e) => Some(e),
            StartError::Client(e) => Some(e),
            StartError::Healthz { source, .. } | StartError::Metrics { source, .. } => Some(source),
            StartError::Node(_) => None,
        }
    }
}

/// A kube configuration as kubectl would find it: `kubeconfig` (else
/// `KUBECONFIG`, `~/.kube/config`, or the in-cluster service account)
/// and `context` (else the current context).
pub async fn config(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<Config, StartError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let mut config =
        match (kubeconfig, context) {
            (Some(path), _) => {
                let file =
                    Kubeconfig::read_from(path).map_err(|source| StartError::ReadKubeconfig {
                        path: path.to_owned(),
                        source,
                    })?;
                Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|source| StartError::Kubeconfig {
                        what: format!("kubeconfig {}", path.display()),
                        source,
                    })?
            }
            (None, Some(name)) => Config::from_kubeconfig(&options).await.map_err(|source| {
                StartError::Kubeconfig {
                    what: format!("kubeconfig context {name}"),
                    source,
                }
            })?,
            (None, None) => Config::infer().await.map_err(StartError::NoConfig)?,
        };
    // A server on plain HTTP (`kubectl proxy`) needs no CA. Without one
    // in the kubeconfig, rustls would load the system's first and fail
    // where there are none (a `FROM scratch` container, a minimal node).
    if config.cluster_url.scheme_str() == Some("http") && config.root_cert.is_none() {
        config.root_cert = Some(Vec::new());
    }
    Ok(config)
}

/// A kube client of `config` whose every request goes through `gates`
/// (deadlines, backoff, freshness: [`crate::api`]), connecting within
/// the settings' deadline.
pub fn gated_client(
    mut config: Config,
    settings: &Settings,
    gates: Arc<Gates>,
) -> Result<Client, StartError> {
    config.connect_timeout = Some(settings.deadlines.connect);
    // The gates' deadlines replace a socket read timeout, and their
    // backoff kube's own retries (which would send requests the gates
    // never see).
    config.read_timeout = None;
    config.default_retry = false;
    let builder = kube::client::ClientBuilder::try_from(config).map_err(StartError::Client)?;
    Ok(builder.with_layer(&GatesLayer(gates)).build())
}

/// What the pre-flight leaves for the run: nothing in it has written
/// anything to the node.
pub struct Preflight {
    /// How the loop paces its syncs.
    pub settings: Settings,
    /// The gates of every API request.
    pub gates: Arc<Gates>,
    /// The client, through the gates.
    pub client: Client,
    /// The health endpoint's listener, bound (`--healthz`).
    pub healthz: Option<(SocketAddr, TcpListener)>,
    /// The metrics server's listener, bound (`--metrics-bind-address`).
    pub metrics: Option<(SocketAddr, TcpListener)>,
    /// The packet path's writer (`None`: `--no-nftables`, a dry run).
    pub packet: Option<node::nft::PacketPath>,
}

/// Everything that can refuse the start, checked before anything is
/// written (no lock, no state file, no dummy interface): two
/// reconcilers must not fight (kube-proxy's check); the interface must
/// be a dummy and nft must run ([`node::preflight`]); the kubeconfig must
/// be read and the client made; the health and metrics ports taken. Must run within
/// the runtime (the listener is registered with it).
pub async fn preflight(args: &Args, log: Log) -> Result<Preflight, StartError> {
    // The node: kube-proxy, the interface's kind, nft (shared with the
    // offline run).
    let node = node::preflight(args).map_err(StartError::Node)?;
    if let Some(warning) = &node.warning {
        log.warn(warning);
    }
    let config = config(
        args.live.kubeconfig.as_deref(),
        args.live.context.as_deref(),
    )
    .await?;
    let settings = Settings::from_args(args);
    let gates = settings.gates(log);
    let client = gated_client(config, &settings, gates.clone())?;
    let healthz = match args.live.healthz {
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(listener) => Some((addr, listener)),
            Err(source) => return Err(StartError::Healthz { addr, source }),
        },
        None => None,
    };
    let metrics = match args.live.metrics_bind {
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(listener) => Some((addr, listener)),
            Err(source) => return Err(StartError::Metrics { addr, source }),
        },
        None => None,
    };
    Ok(Preflight {
        settings,
        gates,
        client,
        healthz,
        metrics,
        packet: node.packet,
    })
}

/// The label of a Node that names its zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The node's zone, for topology hints: `--node-zone` when given; else
/// the `topology.kubernetes.io/zone` label of this node's own Node
/// (`--node-name`, else the host name), read with one GET of that Node
/// alone (the DaemonSet's role grants `get` on `nodes` for it). The API
/// gates time only lists and watches, so this request has its own
/// `deadline`. No node name, no label (or an empty one), or a GET that
/// fails (forbidden, no such Node, deadline passed): no zone, so zone
/// hints are not used, and a warning says why. Read once at the start:
/// a node relabelled later needs a restart (kube-proxy watches its Node).
pub async fn node_zone(
    client: &Client,
    args: &Args,
    deadline: Duration,
    log: Log,
) -> Option<String> {
    if let Some(zone) = &args.node_zone {
        return Some(zone.clone());
    }
    let name = args.node_name.clone().or_else(crate::host_name)?;
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let why = match tokio::time::timeout(deadline, nodes.get(&name)).await {
        Ok(Ok(node)) => {
            let zone = node
                .metadata
                .labels
                .and_then(|mut l| l.remove(ZONE_LABEL))
                .filter(|z| !z.is_empty());
            match zone {
                Some(zone) => {
                    log.info(&format!("zone {zone} (label {ZONE_LABEL} of Node {name})"));
                    return Some(zone);
                }
                None => format!("Node {name} has no label {ZONE_LABEL}"),
            }
        }
        Ok(Err(e)) => format!("cannot get Node {name}: {e}"),
        Err(_) => format!("cannot get Node {name}: no answer within {deadline:?}"),
    };
    log.warn(&format!(
        "{why}: no zone (give --node-zone), zone hints are not used"
    ));
    None
}

pub use crate::serve::raise_open_files;

/// Waits for SIGTERM or SIGINT; returns its name.
pub async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // No signal handling: never fires (the process is then ended
        // by the default disposition, as any other).
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
