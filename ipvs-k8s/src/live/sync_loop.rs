//! The sync loop: what one sync writes to ([`Target`]), the sync itself
//! (map, plan, write, log), and the loop that paces the syncs on the
//! watches' events ([`watch_loop`]).
//!
//! Each sync runs on a thread of its own (the sync thread, which owns
//! the [`Target`]), never on the runtime's thread: the health endpoint,
//! the health-check node ports and the watches are served while a long
//! sync writes (issue 29: /healthz went unanswered for seconds during a
//! first sync of 10,000 Services).
//!
//! The sync thread writes the log to stderr and, in a dry run, the plans
//! to stdout: whoever calls [`watch_loop`] (or [`run`](super::run)) must
//! not hold the standard streams' locks meanwhile (`io::stderr().lock()`
//! held by the calling thread blocks the sync thread at its first log
//! line, forever: the hang of issue 29, docs/reliability.md).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ipvs_netlink::{Op, ServiceId};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use kube::Client;
use tokio::sync::Notify;

use super::health::{HealthCheckNodePorts, HealthCheckService, LastSync};
use super::watch::{objects, watch, Cache, Change, Seen, WatchOptions, WATCH_TIMEOUT};
use crate::api::{Deadlines, Gates};
use crate::log::Log;
use crate::mapping::{self, Mapped, Node};
use crate::node;
use crate::ownership::StateFile;
use crate::pace::{Backoff, Jitter, Pacing, Periods, Schedule, Source};
use crate::sync::{self, Kernel};
use crate::Args;
use ipvs_plan::VirtualServer;
use ipvsadm_compat::rules::op_line;

/// How the loop paces its syncs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The period of full resyncs.
    pub resync: Duration,
    /// How long after the last event a sync waits for more.
    pub quiet: Duration,
    /// How long after the first event of a burst the sync runs at the latest.
    pub max_delay: Duration,
    /// The retry delays of a failed sync (capped at `resync` too), and
    /// of each watch's failures.
    pub retry: Schedule,
    /// How soon after a sync that left real servers draining the next
    /// one runs (at most `resync`), to remove them once idle.
    pub drain_recheck: Duration,
    /// One sync, then return its status.
    pub once: bool,
    /// Print the plans instead of writing them.
    pub dry_run: bool,
    /// The watches' server-side timeout, in seconds (`None`: kube's 290).
    pub watch_timeout: Option<u32>,
    /// The page size of consistent lists (`None`: kube's 500).
    pub page_size: Option<u32>,
    /// Lists ask for `resourceVersion=0`, without a page size: the API
    /// server answers them from its watch cache, whole, as it does the
    /// first list of client-go's reflector (kube-proxy's). No quorum read
    /// from etcd for every node at once. `false`: consistent lists, in
    /// pages of `page_size`.
    pub list_from_cache: bool,
    /// The deadlines of each request to the API server.
    pub deadlines: Deadlines,
    /// How old the data behind the table may get before the health
    /// endpoint answers 503 (see [`Settings::from_args`]).
    pub stale_after: Duration,
}

impl Settings {
    /// The periods of the loop's [`Pacing`].
    pub fn periods(&self) -> Periods {
        Periods {
            resync: self.resync,
            quiet: self.quiet,
            max_delay: self.max_delay,
            drain_recheck: self.drain_recheck,
        }
    }

    /// The retry delays of a failed sync: [`Settings::retry`], at most
    /// `resync`, jittered apart from other nodes.
    pub fn backoff(&self) -> Backoff {
        let schedule = Schedule {
            cap: self.retry.cap.min(self.resync),
            ..self.retry
        };
        Backoff::new(schedule, Jitter::random())
    }

    /// The gates of the API requests: the [`Settings::retry`] schedule
    /// (at most `resync`), the deadlines and the watches' timeout.
    pub fn gates(&self, log: Log) -> Arc<Gates> {
        let schedule = Schedule {
            cap: self.retry.cap.min(self.resync),
            ..self.retry
        };
        Gates::new(
            schedule,
            self.deadlines,
            self.watch_timeout.unwrap_or(WATCH_TIMEOUT),
            log,
        )
    }

    /// How the watches list and watch.
    pub fn watch_options(&self) -> WatchOptions {
        WatchOptions {
            timeout: self.watch_timeout,
            page_size: self.page_size,
            list_from_cache: self.list_from_cache,
        }
    }

    /// The settings of a command line.
    pub fn from_args(args: &Args) -> Self {
        Settings {
            resync: args.live.resync,
            quiet: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            retry: Schedule::default(),
            drain_recheck: DRAIN_RECHECK,
            once: args.live.once,
            dry_run: args.dry_run,
            watch_timeout: None,
            page_size: None,
            list_from_cache: true,
            deadlines: Deadlines::default(),
            stale_after: stale_bound(args.live.resync),
        }
    }
}

/// The staleness bound of a resync period: twice the period (as
/// kube-proxy's healthz), at least a minute, so that it is always longer
/// than the backoff's cap (30 s) plus a request's deadlines: one failed
/// retry alone never turns the node unhealthy, an outage of more than
/// the bound always does.
pub fn stale_bound(resync: Duration) -> Duration {
    (resync * 2).max(Duration::from_secs(60))
}

/// How soon after a sync that left real servers draining the next one
/// runs (kube-proxy checks its draining servers every minute; the table
/// is cheaper to read than to leave a dead server at weight 0 that long).
pub const DRAIN_RECHECK: Duration = Duration::from_secs(5);

/// What one sync did, for the log, the health endpoint and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// 1 for the first sync, then counting.
    pub number: u64,
    /// Whether a periodic resync (rather than a change) started it.
    pub resync: bool,
    /// The sync's status: 0 done, 1 a conflict or a failed write, 2 the
    /// objects did not map (nothing written).
    pub code: i32,
    /// Whether it counts as successful: the objects mapped, the table was
    /// read and every write went through (conflicts are no failure).
    pub ok: bool,
    /// The writes planned.
    pub planned: usize,
    /// The writes sent to the kernel.
    pub sent: usize,
    /// The writes the kernel refused.
    pub failed: usize,
    /// The virtual services wanted.
    pub services: usize,
    /// The Services and EndpointSlices it was computed from.
    pub objects: (usize, usize),
    /// How long it took.
    pub elapsed: Duration,
    /// The real servers it left draining at weight 0 (graceful
    /// termination): another sync comes soon to remove them once idle.
    pub draining: usize,
    /// How long each of its steps took.
    pub phases: sync::Phases,
    /// The health-check node ports this sync found (`port -> Service and
    /// its local endpoint count`), for the servers of
    /// [`HealthCheckServers`](super::health::HealthCheckServers).
    pub health_check_node_ports: HealthCheckNodePorts,
    /// What the packet path's write did (`None`: none was made).
    pub packet: Option<node::nft::Written>,
    /// Whether the packet path's write failed.
    pub packet_failed: bool,
    /// The writes sent, by kind ([`write_kind`]).
    pub sent_by_kind: BTreeMap<&'static str, usize>,
    /// The services it owned and left alone, disowned (another tool
    /// changed them).
    pub disowned: usize,
    /// The services wanted but held by another tool's virtual service.
    pub conflicts: usize,
}

/// The kind of a write, as the live mode's metrics label it
/// (`ipvs_k8s_writes_total{kind}`).
pub fn write_kind(op: &Op) -> &'static str {
    match op {
        Op::AddService(_) => "add_service",
        Op::EditService(_) => "edit_service",
        Op::DeleteService(_) => "delete_service",
        Op::AddDestination(..) => "add_destination",
        Op::EditDestination(..) => "edit_destination",
        Op::DeleteDestination(..) => "delete_destination",
        _ => "other",
    }
}

/// Who watches the loop: each change seen, each sync started and done
/// (the health endpoint, the metrics; a closure of the reports alone is
/// one).
pub trait Observer {
    /// An object of `source` changed (not one of a list).
    fn changed(&mut self, _source: Source, _change: &Change) {}
    /// A sync starts now.
    fn sync_started(&mut self) {}
    /// A sync is done.
    fn synced(&mut self, report: &SyncReport);
}

impl<F: FnMut(&SyncReport)> Observer for F {
    fn synced(&mut self, report: &SyncReport) {
        self(report)
    }
}

impl SyncReport {
    /// The sync as the health endpoint shows it
    /// ([`HealthState::record`](super::health::HealthState::record)).
    pub fn last_sync(&self) -> LastSync {
        LastSync {
            number: self.number,
            ok: self.ok,
            code: self.code,
            writes: self.sent,
            failed_writes: self.failed,
            virtual_services: self.services,
            elapsed: self.elapsed,
        }
    }
}

/// A way to end a running loop from elsewhere (tests; the CLI uses the
/// signals).
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<Notify>);

impl Stop {
    /// A new, unfired stop.
    pub fn new() -> Self {
        Stop::default()
    }

    /// Ends the loop at its next turn (also if it has not started yet).
    pub fn stop(&self) {
        self.0.notify_one();
    }

    async fn fired(&self) {
        self.0.notified().await;
    }
}

/// One line of the log for a write: what changes, and the Service it
/// comes from.
pub fn describe_op(op: &Op, origins: &HashMap<ServiceId, &str>) -> String {
    let mut line = String::new();
    write_op(&mut line, op, origins);
    line
}

/// [`describe_op`], appended to `out`.
fn write_op(out: &mut String, op: &Op, origins: &HashMap<ServiceId, &str>) {
    use std::fmt::Write as _;
    let _ = match op {
        Op::AddService(s) => write!(out, "add virtual service {}", s.id),
        Op::EditService(s) => write!(out, "change virtual service {}", s.id),
        Op::DeleteService(id) => write!(out, "remove virtual service {id}"),
        Op::AddDestination(id, d) => write!(out, "add real server {} to {id}", d.socket_addr()),
        Op::EditDestination(id, d) => {
            write!(out, "change real server {} of {id}", d.socket_addr())
        }
        Op::DeleteDestination(id, a) => write!(out, "remove real server {a} from {id}"),
        other => write!(out, "write {}", op_line(other)),
    };
    // The Service a write comes from; a removed virtual service has none.
    if let Some(origin) = op_service(op).and_then(|id| origins.get(id)) {
        let _ = write!(out, " ({origin})");
    }
}

/// The virtual service a write is to, but a removed one's (which no
/// Service has).
fn op_service(op: &Op) -> Option<&ServiceId> {
    match op {
        Op::AddService(s) | Op::EditService(s) => Some(&s.id),
        Op::AddDestination(id, _) | Op::EditDestination(id, _) | Op::DeleteDestination(id, _) => {
            Some(id)
        }
        _ => None,
    }
}

/// The node as the mapping needs it, read anew at each sync (addresses
/// may come and go).
fn node(args: &Args) -> Result<Node, String> {
    Ok(Node {
        ips: crate::node_ips(args)?,
        name: args.node_name.clone().or_else(crate::host_name),
        zone: args.node_zone.clone(),
        scheduler: args.scheduler.clone(),
    })
}

/// What a resync with a known table reads ([`sync::resync_table`]).
struct Resync {
    /// The services the state file records.
    recorded: HashSet<ServiceId>,
    /// The resync's number, whose turn of real servers it reads.
    turn: u64,
}

/// The table a sync plans against, with the table as the last good sync
/// left it (`known`): a sync after a change plans against that instead
/// of dumping the whole table again (one destination dump per service);
/// a resync reads the services and the real servers that can have
/// changed, or whose turn it is ([`sync::resync_table`]), and says which
/// virtual services it found otherwise than known; without `known` (the
/// first sync, the one after a failed one) the whole table is read.
/// Returns the table, what a resync found changed (`None`: nothing is
/// known of what changed) and the number of real-server lists read.
type Read = (
    Vec<VirtualServer>,
    Option<HashSet<ServiceId>>,
    Option<usize>,
);

fn read_table<K: Kernel>(
    kernel: &mut K,
    known: Option<Vec<VirtualServer>>,
    resync: Option<Resync>,
    must: &HashSet<ServiceId>,
) -> Result<Read, ipvs_netlink::Error> {
    Ok(match (known, resync) {
        (Some(known), Some(r)) => {
            let read = sync::resync_table(kernel, known, &r.recorded, must, r.turn)?;
            (read.table, Some(read.drift), Some(read.read))
        }
        (Some(known), None) => (known, Some(HashSet::new()), None),
        (None, _) => (kernel.table()?, None, None),
    })
}

/// The dummy interface, with the addresses the last sync bound: a sync
/// that wants the addresses the last bind left (most: a change of
/// endpoints, a no-op resync) does not read the interface's addresses
/// again (a dump of every address of the node). With `check` (the first
/// sync, the one after a failed sync, every [`sync::RESYNC_TURNS`]-th
/// resync), and after a bind that failed or left an address out, it
/// binds as the interface has them: an address removed behind our back
/// is put back within that many resyncs.
struct RememberedAddresses<'a> {
    dummy: &'a mut node::Dummy,
    /// The addresses wanted and kept when the last bind left the
    /// interface exactly so.
    last: &'a mut Option<(BTreeSet<IpAddr>, BTreeSet<IpAddr>)>,
    /// Read the interface whatever was bound before.
    check: bool,
}

impl node::Addresses for RememberedAddresses<'_> {
    fn name(&self) -> &str {
        self.dummy.name()
    }

    fn bind_keeping(
        &mut self,
        wanted: &BTreeSet<IpAddr>,
        keep: &BTreeSet<IpAddr>,
    ) -> Result<node::Changes, String> {
        if !self.check {
            if let Some((w, k)) = self.last.as_ref() {
                if w == wanted && k == keep {
                    return Ok(node::Changes::default());
                }
            }
        }
        *self.last = None;
        let changes = self.dummy.bind_keeping(wanted, keep)?;
        if changes.errors.is_empty() && changes.elsewhere.is_empty() {
            *self.last = Some((wanted.clone(), keep.clone()));
        }
        Ok(changes)
    }
}

/// What the loop syncs, and with what: the kernel, the state file, the
/// dummy interface, the command line, the settings, the log. The loop
/// hands it to the sync thread, which owns it.
pub struct Target<K: Kernel> {
    /// The IPVS table (a netlink handle; an in-memory table in tests).
    pub kernel: K,
    /// The record of the virtual services it created.
    pub state: StateFile,
    /// The dummy interface that holds the service addresses (`None`:
    /// none is managed).
    pub dummy: Option<node::Dummy>,
    /// The packet path's nftables table (`None`: not written).
    pub packet: Option<node::nft::PacketPath>,
    /// The command line.
    pub args: Args,
    /// How the loop paces its syncs, and the mode.
    pub settings: Settings,
    /// Where it logs.
    pub log: Log,
}

/// What one sync leaves for the next.
#[derive(Debug, Default)]
struct Memory {
    /// The number of the last sync (0 before the first).
    number: u64,
    /// The number of resyncs so far.
    resyncs: u64,
    /// The addresses the last bind left on the dummy interface (see
    /// [`RememberedAddresses`]).
    bound: Option<(BTreeSet<IpAddr>, BTreeSet<IpAddr>)>,
    /// The table as the last good sync left it (see [`read_table`]).
    known: Option<Vec<VirtualServer>>,
    /// The conflicts of the last good sync (with `known`: the next sync
    /// may plan only what changed, [`sync::Scope`]).
    conflicts: Option<HashSet<ServiceId>>,
    /// Each Service's part of the desired table, mapped anew only when
    /// its objects change.
    mapping: mapping::Incremental,
    /// The warnings and conflicts the last sync logged.
    last_errors: String,
    /// The table the last sync mapped (firewall marks given), with the
    /// marks the state file gave it: the next sync takes it as it is
    /// when no Service changed.
    mapped: Option<(Mapped, BTreeMap<String, u32>)>,
}

impl<K: Kernel> Target<K> {
    /// One sync from the stores' objects: map, plan, log each change, write.
    fn sync(&mut self, memory: &mut Memory, objects: &Cache, resync: bool) -> SyncReport {
        memory.number += 1;
        let Target {
            kernel,
            state,
            dummy,
            packet,
            args,
            settings,
            log,
        } = self;
        let log = *log;
        let number = memory.number;
        log.debug(&format!("sync {number}: running"));
        let known = &mut memory.known;
        let last_conflicts = &mut memory.conflicts;
        let resyncs = &mut memory.resyncs;
        let bound = &mut memory.bound;
        let incremental = &mut memory.mapping;
        let last_errors = &mut memory.last_errors;
        let started = Instant::now();
        let mut report = SyncReport {
            number,
            resync,
            code: 2,
            ok: false,
            planned: 0,
            sent: 0,
            failed: 0,
            services: 0,
            objects: (objects.services.len(), objects.slices.len()),
            elapsed: Duration::ZERO,
            draining: 0,
            phases: sync::Phases::default(),
            health_check_node_ports: HealthCheckNodePorts::new(),
            packet: None,
            packet_failed: false,
            sent_by_kind: BTreeMap::new(),
            disowned: 0,
            conflicts: 0,
        };
        // Only the Services whose objects changed are mapped anew; when
        // none did, the last sync's table is taken as it is.
        let previous = state.fwmarks();
        let last = memory.mapped.take().filter(|(_, marks)| *marks == previous);
        let mapped = node(args).map(|n| {
            incremental.map_or_keep(&objects.services, &objects.slices, &n, last.map(|(m, _)| m))
        });
        let (mapped, mut changes) = match mapped {
            Ok((mut mapped, changes, fresh)) => {
                // The firewall marks of eTP Local ports, kept across syncs
                // and restarts by the state file's names; their few
                // services are planned at every sync (a mark may move
                // between Service ports).
                if fresh {
                    mapping::assign_fwmarks(
                        &mut mapped,
                        &previous,
                        args.packet.fwmarks,
                        &args.scheduler,
                    );
                }
                (mapped, changes)
            }
            Err(msg) => {
                log.warn(&format!(
                    "sync {number}: the cluster's objects do not map, nothing written: {msg}"
                ));
                report.elapsed = started.elapsed();
                return report;
            }
        };
        changes.ids.extend(
            mapped
                .desired
                .iter()
                .map(|d| d.server.service.id)
                .chain(state.recorded.keys().copied())
                .filter(|id| matches!(id, ServiceId::Fwmark { .. })),
        );
        report.phases.done("map", started);
        // The names the state file records beside the services (for
        // `--top` and `--metrics`).
        // Only those of the virtual services that changed are copied
        // (the others' are the last sync's).
        if changes.all {
            state.name(
                mapped
                    .desired
                    .iter()
                    .map(|d| (d.server.service.id, d.origin.clone()))
                    .collect(),
            );
        } else {
            state.rename(
                &changes.ids,
                mapped
                    .desired
                    .iter()
                    .filter(|d| changes.ids.contains(&d.server.service.id))
                    .map(|d| (d.server.service.id, d.origin.clone())),
            );
        }
        log.debug(&format!(
            "sync {number}: mapped{} {} Service(s) anew",
            if changes.all { " all," } else { "" },
            changes.services
        ));
        report.services = mapped.desired.len();
        // The health-check node ports of the Services served (a dry run
        // serves none).
        if !settings.dry_run {
            report.health_check_node_ports = crate::model::health_checks(&mapped.ports)
                .into_iter()
                .map(|(port, hc)| {
                    let service = HealthCheckService {
                        namespace: hc.namespace,
                        name: hc.name,
                        local_endpoints: hc.local_endpoints,
                    };
                    (port, service)
                })
                .collect();
        }
        let (outcome, at) = {
            let table = known.take();
            // After a sync that failed, or left real servers draining,
            // the addresses are read again too.
            let good_before = table.is_some();
            let conflicts = last_conflicts.take();
            let reading = (resync && table.is_some() && !state.adopt).then(|| {
                *resyncs += 1;
                Resync {
                    recorded: state.ids(),
                    turn: *resyncs,
                }
            });
            let table = if resync && reading.is_none() {
                None
            } else {
                table
            };
            // The interface's addresses are read at the first sync, after
            // one that failed, and at every RESYNC_TURNS-th resync; other
            // syncs bind what changed since the last bind.
            let check_addresses =
                !good_before || (resync && (*resyncs).is_multiple_of(sync::RESYNC_TURNS as u64));
            let at = Instant::now();
            let read = read_table(kernel, table, reading, &changes.ids);
            report.phases.done("table", at);
            let mut remembering = Duration::ZERO;
            let outcome = match read {
                Err(e) => sync::Outcome::broken(
                    sync::Note::Kernel(ipvsadm_compat::messages::describe(&e)),
                    sync::Phases::default(),
                ),
                Ok((mut current, drift, lists)) => {
                    if let Some(lists) = lists {
                        log.debug(&format!(
                            "sync {number}: read the real servers of {lists} virtual service(s), {} found changed",
                            drift.as_ref().map_or(0, HashSet::len)
                        ));
                    }
                    // After a good sync whose table is remembered, only the
                    // virtual services of the Services that changed, and on
                    // a resync those the read found changed, are planned.
                    let scoped = drift.is_some() && !changes.all;
                    changes.ids.extend(drift.into_iter().flatten());
                    let scope = match &conflicts {
                        Some(conflicts) if scoped => Some(sync::Scope {
                            ids: &changes.ids,
                            conflicts,
                        }),
                        _ => None,
                    };
                    if let Some(scope) = &scope {
                        log.debug(&format!(
                            "sync {number}: planning {} virtual service(s)",
                            scope.ids.len()
                        ));
                    }
                    let mut addresses = dummy.as_mut().map(|dummy| RememberedAddresses {
                        dummy,
                        last: bound,
                        check: check_addresses,
                    });
                    let outcome = sync::step_against(
                        kernel,
                        &current,
                        &mapped,
                        state,
                        settings.dry_run,
                        sync::NodeSide {
                            dummy: addresses.as_mut().map(|d| d as &mut dyn node::Addresses),
                            packet: packet.as_mut(),
                            conntrack: (!settings.dry_run).then_some(
                                &mut node::conntrack::Kernel as &mut dyn node::conntrack::Conntrack,
                            ),
                        },
                        scope,
                    );
                    // Real servers left draining are not in the desired
                    // table: the next sync reads the kernel.
                    if !settings.dry_run
                        && outcome.failed == 0
                        && !outcome.error
                        && outcome.sync.draining.is_empty()
                    {
                        let at = Instant::now();
                        sync::patch_table(&mut current, &outcome.sync.plan.ops);
                        *known = Some(current);
                        *last_conflicts =
                            Some(outcome.sync.plan.conflicts.iter().copied().collect());
                        remembering = at.elapsed();
                    }
                    outcome
                }
            };
            log.debug(&format!("sync {number}: written"));
            report.phases.0.extend(outcome.phases.0.iter().copied());
            report.phases.0.push(("remember", remembering));
            (outcome, Instant::now())
        };
        // Warnings and conflicts are repeated at each sync: logged at info
        // level only when they change.
        let mut notes: String = mapped
            .warnings
            .iter()
            .map(|w| format!("warning: {w}\n"))
            .collect();
        for p in &mapped.problems {
            notes.push_str(&format!("{p}\n"));
        }
        for note in &outcome.notes {
            notes.push_str(&format!("{note}\n"));
        }
        if !notes.is_empty() {
            if notes != *last_errors {
                log.warn(&notes);
            } else {
                log.debug(&notes);
            }
        }
        *last_errors = notes;
        if settings.dry_run && !outcome.sync.plan.ops.is_empty() {
            let mut out = io::stdout().lock();
            for op in &outcome.sync.plan.ops {
                let _ = writeln!(out, "{}", op_line(op));
            }
            let _ = out.flush();
        }
        let ops = &outcome.sync.plan.ops;
        if !settings.dry_run && outcome.sent > 0 {
            // The Services of the virtual services written (no more:
            // a sync of one change names a few).
            let written: HashSet<&ServiceId> = ops.iter().filter_map(op_service).collect();
            let origins: HashMap<ServiceId, &str> = mapped
                .desired
                .iter()
                .filter(|d| written.contains(&d.server.service.id))
                .map(|d| (d.server.service.id, d.origin.as_str()))
                .collect();
            // One write for all the lines (a first sync has one per service
            // and real server); refused writes were logged above.
            log.info_each(ops, |out, op| write_op(out, op, &origins));
        }
        if !outcome.bound.is_empty() {
            log.info_each(&outcome.bound, |text, line| text.push_str(line));
        }
        report.phases.done("log", at);
        report.draining = outcome.sync.draining.len();
        report.code = outcome.code;
        if !mapped.problems.is_empty() {
            // Skipped Services: the rest is synced, retrying cannot help.
            report.code = report.code.max(1);
        }
        report.packet = outcome.packet;
        report.packet_failed = outcome
            .notes
            .iter()
            .any(|n| matches!(n, sync::Note::Broken(m) if m.starts_with("the packet path")));
        if !settings.dry_run && outcome.sent > 0 {
            for op in ops {
                *report.sent_by_kind.entry(write_kind(op)).or_insert(0) += 1;
            }
        }
        report.disowned = outcome.sync.disowned.len();
        report.conflicts = outcome.sync.plan.conflicts.len();
        report.planned = ops.len();
        report.sent = outcome.sent;
        report.failed = outcome.failed;
        // Conflicts alone leave the sync successful: retrying cannot help.
        report.ok = outcome.failed == 0 && !outcome.error;
        memory.mapped = Some((mapped, previous));
        report.elapsed = started.elapsed();
        report
    }
}

/// The watch loop: syncs `to` to the cluster of `client` until `stop`
/// fires (or after one sync with [`Settings::once`]). `observe` sees
/// every change the watches report (not a list's objects), every sync's
/// start and report. Returns 0 after a stop, or the status of the
/// `--once` sync (2 when a list or watch failed before it).
pub async fn watch_loop<K: Kernel + Send + 'static>(
    client: Client,
    gates: Arc<Gates>,
    to: Target<K>,
    observe: &mut dyn Observer,
    stop: Stop,
) -> i32 {
    let (settings, log) = (to.settings.clone(), to.log);
    let watching = settings.watch_options();
    let (services, service_events) =
        watch::<core::Service>(&client, &watching, Source::Services, gates.clone());
    let (slices, slice_events) =
        watch::<discovery::EndpointSlice>(&client, &watching, Source::Slices, gates);
    let events = futures_util::stream::select(
        service_events.map(|e| (Source::Services, e)),
        slice_events.map(|e| (Source::Slices, e)),
    );
    let mut events = std::pin::pin!(events);
    let stopped = stop.fired();
    let mut stopped = std::pin::pin!(stopped);

    let mut pacing = Pacing::new(settings.periods(), settings.backoff());
    let mut syncer = match Syncer::start(to) {
        Ok(s) => s,
        Err(e) => {
            log.warn(&format!("cannot start the sync thread: {e}"));
            return 2;
        }
    };
    log.info("watching Services and EndpointSlices");
    let watch_began = now();
    loop {
        let sleep = sleep_until(pacing.due());
        tokio::select! {
            biased;
            _ = &mut stopped => return 0,
            event = events.next() => {
                let Some((source, seen)) = event else {
                    // The watcher streams never end; if they did, nothing
                    // more would come: stop rather than spin.
                    log.warn("the watches ended");
                    return 1;
                };
                match seen {
                    Seen::Changed(change) => {
                        log.debug(&change.what);
                        observe.changed(source, &change);
                        pacing.changed(now());
                    }
                    Seen::ListStarted => {}
                    Seen::Listed => {
                        let now = now();
                        log.debug(&format!(
                            "listed {} ({} ms after the watch began)",
                            source.name(),
                            now.duration_since(watch_began).as_millis()
                        ));
                        pacing.listed(source, now);
                    }
                    Seen::Failed(msg) if settings.once => {
                        // One sync was asked for: no waiting for the cluster.
                        log.warn(&format!("watch of {}: {msg}", source.name()));
                        return 2;
                    }
                    Seen::Failed(msg) => {
                        // The gates log the failing and the recovery.
                        log.debug(&format!("watch of {}: {msg}", source.name()));
                    }
                }
            }
            _ = sleep => {
                let resync = pacing.start(now());
                let objects = objects(&services, &slices);
                // On the sync thread: the health endpoint answers while
                // the sync writes.
                log.debug("a sync starts");
                observe.sync_started();
                let report = syncer.sync(objects, resync).await;
                log_sync(log, &report);
                observe.synced(&report);
                if settings.once {
                    return report.code;
                }
                let number = report.number;
                if report.draining > 0 {
                    log.debug(&format!("{} real server(s) draining: next sync in {} ms", report.draining, settings.drain_recheck.as_millis()));
                }
                if let Some(delay) = pacing.finished(now(), report.ok, report.draining > 0) {
                    log.warn(&format!("sync {number} failed: retrying in {} ms", delay.as_millis()));
                }
            }
        }
    }
}

/// The stack of the sync thread: the main thread's default.
const SYNC_STACK: usize = 8 << 20;

/// A sync asked of the sync thread: the objects, whether it is a resync,
/// where its report goes.
type Job = (Cache, bool, tokio::sync::oneshot::Sender<SyncReport>);

/// The thread the syncs run on, which owns the [`Target`]: the runtime's
/// thread only hands it the objects and awaits the report. Dropping it
/// ends the thread (after the sync it runs, if any) and waits for it, so
/// that the state file's lock is released on return.
struct Syncer {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    fn start<K: Kernel + Send + 'static>(mut to: Target<K>) -> io::Result<Syncer> {
        let (jobs, inbox) = std::sync::mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("sync".into())
            .stack_size(SYNC_STACK)
            .spawn(move || {
                let mut memory = Memory::default();
                while let Ok((objects, resync, reply)) = inbox.recv() {
                    let _ = reply.send(to.sync(&mut memory, &objects, resync));
                }
            })?;
        Ok(Syncer {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// One sync on the sync thread. A panic there is resumed here.
    async fn sync(&mut self, objects: Cache, resync: bool) -> SyncReport {
        let (reply, report) = tokio::sync::oneshot::channel();
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send((objects, resync, reply));
        }
        match report.await {
            Ok(report) => report,
            Err(_) => {
                // The thread dropped the job: it panicked.
                self.jobs = None;
                match self.thread.take().map(std::thread::JoinHandle::join) {
                    Some(Err(panic)) => std::panic::resume_unwind(panic),
                    _ => unreachable!("the sync thread ends only when its jobs do"),
                }
            }
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sleeps until `due` on the runtime's clock; forever when `None`.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Now, on the runtime's clock (which tests may pause) as the pacing
/// takes it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The log lines of a sync done.
fn log_sync(log: Log, report: &SyncReport) {
    let nft = match report.packet {
        Some(w) if w.sent => format!(
            ", nftables +{} -{} elements{}",
            w.added,
            w.deleted,
            if w.restored {
                " (whole table: another tool had removed it)"
            } else if w.full {
                " (whole table)"
            } else {
                ""
            }
        ),
        Some(_) => ", nftables unchanged".to_owned(),
        None => String::new(),
    };
    let line = format!(
        "sync {}{}: {} Services, {} EndpointSlices, {} virtual services; {} writes{}{nft}, {} ms",
        report.number,
        if report.resync { " (resync)" } else { "" },
        report.objects.0,
        report.objects.1,
        report.services,
        report.sent,
        if report.failed > 0 {
            format!(" ({} refused)", report.failed)
        } else {
            String::new()
        },
        report.elapsed.as_millis()
    );
    if report.sent > 0 || report.packet.is_some_and(|w| w.sent) || !report.ok {
        log.info(&line);
    } else {
        log.debug(&line);
    }
    log.debug(&format!(
        "sync {} took: {}",
        report.number,
        report.phases.describe()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipvs_netlink::{Destination, Service};

    /// The loop's clock and sleeps, with the pacing, on paused time: it
    /// wakes exactly when a sync is due, and never when none is.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_loop_sleeps_until_the_pacing_is_due_on_paused_time() {
        use crate::pace::{Schedule, Source};
        use tokio::time::{advance, timeout};
        let settings = Settings {
            resync: Duration::from_secs(30),
            quiet: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            retry: Schedule::default(),
            drain_recheck: DRAIN_RECHECK,
            once: false,
            dry_run: false,
            watch_timeout: None,
            page_size: None,
            list_from_cache: true,
            deadlines: Deadlines::default(),
            stale_after: stale_bound(Duration::from_secs(30)),
        };
        // The timer's resolution is a millisecond.
        let woke_at = |at: Instant| {
            let n = now();
            assert!(
                n >= at && n <= at + Duration::from_millis(1),
                "{n:?} for {at:?}"
            );
        };
        let mut pacing = Pacing::new(settings.periods(), settings.backoff());
        let t0 = now();
        // Nothing is due before the lists: a day goes by without a sync.
        pacing.changed(t0);
        let day = Duration::from_secs(86_400);
        assert!(timeout(day, sleep_until(pacing.due())).await.is_err());
        woke_at(t0 + day);
        let t1 = now();
        pacing.listed(Source::Services, t1);
        advance(Duration::from_millis(60)).await;
        pacing.listed(Source::Slices, now());
        // A burst began a day ago: due at once.
        sleep_until(pacing.due()).await;
        woke_at(t1 + Duration::from_millis(60));
        assert!(!pacing.start(now()));
        // A failed sync: the retry after 0.4-0.8 s.
        let delay = pacing.finished(now(), false, false).unwrap();
        assert!((400..=800).contains(&delay.as_millis()), "{delay:?}");
        let failed = now();
        sleep_until(pacing.due()).await;
        woke_at(failed + delay);
        assert!(!pacing.start(now()), "a retry");
        pacing.finished(now(), true, false);
        // Then a resync every 30 s.
        let ok = now();
        sleep_until(pacing.due()).await;
        woke_at(ok + settings.resync);
        assert!(pacing.start(now()), "a resync");
    }

    #[test]
    fn each_write_is_one_readable_line() {
        let id = ServiceId::tcp("10.96.0.10:80".parse().unwrap());
        let origins: HashMap<ServiceId, &str> = [(id, "default/web:http")].into();
        let d = Destination::new("10.244.0.3:8080".parse().unwrap());
        assert_eq!(
            describe_op(&Op::AddService(Service::new(id, "rr")), &origins),
            "add virtual service TCP 10.96.0.10:80 (default/web:http)"
        );
        assert_eq!(
            describe_op(&Op::AddDestination(id, d.clone()), &origins),
            "add real server 10.244.0.3:8080 to TCP 10.96.0.10:80 (default/web:http)"
        );
        assert_eq!(
            describe_op(&Op::DeleteDestination(id, d.socket_addr()), &origins),
            "remove real server 10.244.0.3:8080 from TCP 10.96.0.10:80 (default/web:http)"
        );
        assert_eq!(
            describe_op(&Op::DeleteService(id), &HashMap::new()),
            "remove virtual service TCP 10.96.0.10:80"
        );
    }

    /// A measuring tool, not a check (`cargo test -p ipvs-k8s --lib --
    /// --ignored --nocapture an_event_at_10000`): the live loop's sync of
    /// one event (one EndpointSlice changed, or one Service added) with
    /// 10,000 Services of 4 endpoints loaded, against the in-memory
    /// kernel and a state file in a temporary directory, each step timed
    /// (the median and the largest of 20 events of each kind).
    #[test]
    #[ignore = "a measurement: run it by hand"]
    fn an_event_at_10000_services_step_by_step() {
        let n = 10_000usize;
        let svc = crate::sync::tests::bench_service;
        let slice = crate::sync::tests::bench_slice;
        let (state, dir) = crate::sync::tests::state_file();
        let mut target = Target {
            kernel: crate::sync::tests::Mem::default(),
            state,
            dummy: None,
            packet: None,
            args: crate::tests::args_with("kube-ipvs0", vec!["192.0.2.1".parse().unwrap()]),
            settings: Settings::from_args(&crate::tests::args_with("kube-ipvs0", Vec::new())),
            log: Log { verbose: false },
        };
        let mut memory = Memory::default();
        let mut services: Vec<_> = (0..n).map(svc).collect();
        let mut slices: Vec<_> = (0..n).map(|i| slice(i, 0)).collect();
        let cache = |services: &Vec<Arc<core::Service>>,
                     slices: &Vec<Arc<discovery::EndpointSlice>>| Cache {
            services: services.clone(),
            slices: slices.clone(),
        };
        let first = target.sync(&mut memory, &cache(&services, &slices), false);
        assert!(first.ok, "the first sync");
        assert_eq!(first.services, n);
        let mut steps: BTreeMap<(&str, &str), Vec<Duration>> = BTreeMap::new();
        for round in 0..40 {
            let kind = if round % 2 == 0 {
                let i = (round * 487) % n;
                slices[i] = slice(i, round + 1);
                "slice changed"
            } else {
                let i = n + round;
                services.push(svc(i));
                slices.push(slice(i, 0));
                "Service added"
            };
            let report = target.sync(&mut memory, &cache(&services, &slices), false);
            assert!(report.ok && report.failed == 0, "{kind}");
            assert_eq!(
                report.sent,
                if kind == "Service added" { 5 } else { 8 },
                "{kind}"
            );
            for (step, took) in &report.phases.0 {
                steps.entry((kind, step)).or_default().push(*took);
            }
            steps
                .entry((kind, "total"))
                .or_default()
                .push(report.elapsed);
        }
        for ((kind, step), mut took) in steps {
            took.sort();
            println!(
                "{kind:>14}: {step:>10} p50 {:>9.3} ms, max {:>9.3} ms",
                took[took.len() / 2].as_secs_f64() * 1e3,
                took[took.len() - 1].as_secs_f64() * 1e3
            );
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
