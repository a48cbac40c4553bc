//! The live mode of `--from-k8s`: watch a cluster's Services and
//! EndpointSlices and keep the IPVS table in sync with them.
//!
//! Its rooms:
//! - [`start`]: the pre-flight (everything that can refuse the start,
//!   checked before anything is written), the cluster configuration and
//!   the client whose every request goes through the [`Gates`](crate::api::Gates);
//! - [`watch`]: the two watches (kube-runtime's watcher: lists then
//!   watches, resumes from the last resourceVersion, asks for bookmarks,
//!   relists after 410 Gone) and their reflector stores;
//! - [`sync_loop`]: the sync target (kernel, state file, dummy interface)
//!   and the loop that paces the syncs with the pure state machine
//!   [`Pacing`](crate::pace::Pacing): the first sync after both initial
//!   lists, a lone change after a quiet stretch at once, any other
//!   [`Settings::quiet`] after the last event (at most
//!   [`Settings::max_delay`] after the first), a full resync every
//!   `--resync`, a failed sync retried with a backoff. Each sync runs on
//!   the sync thread, off the runtime's;
//! - [`health`]: the HTTP serving (hyper): the health endpoint and the
//!   health-check node ports;
//! - [`metrics`]: the proxy's own metrics (`--metrics-bind-address`),
//!   kube-proxy's names where it has a counterpart;
//! - [`crate::log`]: the log; [`crate::api`]: the API requests' gates;
//!   [`crate::pace`]: when to sync.
//!
//! This module is the entry, [`run`], and the order of the start.
//! Everything async runs on one current-thread tokio runtime built here:
//! the rest of the command line stays blocking.

pub mod health;
pub mod metrics;
pub mod start;
pub mod sync_loop;
pub mod watch;

use std::time::Instant;

use ipvs_netlink::Handle;

use self::health::{HealthCheckServers, HealthState, Limits};
use self::metrics::{Observed, ProxyMetrics};
use self::start::{preflight, raise_open_files, wait_for_signal, Preflight};
use crate::node;
use crate::ownership::StateFile;
use crate::Args;

pub use self::start::{config, gated_client, node_zone, StartError, ZONE_LABEL};
pub use self::sync_loop::{
    describe_op, stale_bound, watch_loop, write_kind, Observer, Settings, Stop, SyncReport, Target,
    DRAIN_RECHECK,
};
pub use self::watch::WATCH_TIMEOUT;
pub use crate::api::Deadlines;
pub use crate::log::Log;

/// Runs the live mode of a command line: opens IPVS with `open`, the
/// state file and a client, then syncs until SIGTERM or SIGINT (or once).
/// Exit 0 on a clean stop (or, with `--once`, a sync that left the table
/// matching), 1 for a failed `--once` sync, 2 when it could not start.
///
/// The syncs run on a thread of their own, which writes the log to
/// stderr (and a dry run's plans to stdout): the caller must not hold
/// `io::stderr().lock()` or `io::stdout().lock()` across this call, or
/// that thread blocks at its first line for good.
pub fn run(open: impl FnOnce() -> Result<Handle, String>, args: &Args) -> i32 {
    let started = Instant::now();
    let log = Log {
        verbose: args.live.verbose,
    };
    let fail = |msg: &dyn std::fmt::Display| {
        eprintln!("ipvsadm-rs: --from-k8s: {msg}");
        2
    };
    raise_open_files();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&StartError::Runtime(e)),
    };
    runtime.block_on(async {
        // 1. What can refuse the start, before anything is written.
        let Preflight {
            settings,
            gates,
            client,
            healthz,
            metrics: metrics_listener,
            packet,
        } = match preflight(args, log).await {
            Ok(p) => p,
            Err(e) => return fail(&e),
        };
        // The zone for topology hints: --node-zone, else the Node's label.
        let d = settings.deadlines;
        let args = &Args {
            node_zone: node_zone(&client, args, d.connect + d.first_byte + d.body_gap, log).await,
            ..args.clone()
        };
        // 2. IPVS must answer.
        let handle = match open() {
            Ok(h) => h,
            Err(message) => {
                eprint!("{message}");
                return 2;
            }
        };
        // 3. The first write: the lock (a dry run changes nothing, so it
        // takes none), then the dummy interface (one of that name that is
        // not a dummy stops here); then the sysctls, which exist once
        // IPVS is.
        // One instance that writes per network namespace (issue 34).
        let _netns = match (!args.dry_run)
            .then(|| crate::ownership::lock_netns(&args.state))
            .transpose()
        {
            Ok(lock) => lock,
            Err(msg) => return fail(&msg),
        };
        let mut state = match StateFile::open_adopting(&args.state, !args.dry_run, args.adopt) {
            Ok(s) => s,
            Err(msg) => return fail(&msg),
        };
        for note in std::mem::take(&mut state.notes) {
            log.warn(&note);
        }
        let (dummy, sysctls) =
            match node::prepare(&args.node, args.dry_run, args.packet.localhost_nodeports) {
                Ok(p) => p,
                Err(msg) => return fail(&msg),
            };
        for note in &sysctls.notes {
            log.warn(note);
        }
        // 4. The serving: the health endpoint, the health-check node
        // ports (opened as the syncs find them), the signals.
        let metrics = ProxyMetrics::new(Some(gates.clone()));
        let health = HealthState::new(settings.stale_after, Some(gates.clone()))
            .with_metrics(metrics.clone());
        if let Some((addr, listener)) = metrics_listener {
            log.info(&format!("metrics on http://{addr}/metrics"));
            tokio::spawn(metrics::serve_metrics(
                listener,
                metrics.clone(),
                Limits {
                    lifetime: metrics::LIFETIME,
                    ..Limits::default()
                },
            ));
        }
        if let Some((addr, listener)) = healthz {
            log.info(&format!("health endpoint on http://{addr}/healthz"));
            tokio::spawn(health::serve_healthz(
                listener,
                health.clone(),
                Limits::default(),
            ));
        }
        let mut health_checks = {
            let health = health.clone();
            HealthCheckServers::new(None, move || health.healthy())
        };
        let stop = Stop::new();
        let signals = {
            let stop = stop.clone();
            async move {
                let name = wait_for_signal().await;
                log.info(&format!("{name}: stopping"));
                stop.stop();
            }
        };
        tokio::spawn(signals);
        log.debug(&format!(
            "started in {} ms (runtime, client, IPVS, state file, node)",
            started.elapsed().as_millis()
        ));
        // 5. The loop.
        let mut last_errors = String::new();
        let observe = |r: &SyncReport| {
            health.record(r.last_sync());
            // A port that cannot be bound is retried at each sync: its
            // error is logged at warning level when it changes.
            let before = health_checks.ports();
            let errors: String = health_checks
                .publish(&r.health_check_node_ports)
                .iter()
                .map(|e| format!("{e}\n"))
                .collect();
            if errors != last_errors && errors.is_empty() {
                log.info("every health-check node port is served");
            } else if errors != last_errors {
                log.warn(&errors);
            } else if !errors.is_empty() {
                log.debug(&errors);
            }
            last_errors = errors;
            let after = health_checks.ports();
            if after != before {
                let ports: Vec<String> = after.iter().map(|(p, _)| p.to_string()).collect();
                log.info(&format!("health-check node ports: [{}]", ports.join(", ")));
            }
        };
        let to = Target {
            kernel: handle,
            state,
            dummy,
            packet,
            args: args.clone(),
            settings,
            log,
        };
        let mut observe = Observed {
            metrics,
            then: observe,
        };
        watch_loop(client, gates, to, &mut observe, stop).await
    })
}
