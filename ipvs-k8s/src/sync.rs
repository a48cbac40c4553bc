//! One sync of `--from-k8s`: read the dump, map it, dump the kernel's
//! table once, plan with [`ipvs_plan::plan`] over the services it owns,
//! record what it is about to create, then send only the changes.
//!
//! Real servers that went are removed gracefully, as kube-proxy removes
//! them ([`super::graceful`]). Around the writes, the node side
//! ([`super::node`]): before them, the kube-proxy check and the sysctls;
//! after them, the virtual addresses bound to the dummy interface.
//!
//! Writes go in two pipelined batches: first the new services, then the
//! rest (real servers, edits, deletions). A new service whose creation
//! failed (someone created it between the dump and the write) is not ours:
//! its real servers are not sent, so a foreign service is never changed.

use std::collections::HashSet;
use std::io::Read;
use std::time::{Duration, Instant};

use ipvs_netlink::{Handle, Op, ServiceId};

use super::graceful::{self, Draining};
use super::mapping::{self, Mapped, Node};
use super::node;
use super::ownership::StateFile;
use super::Args;
use crate::Io;
use ipvs_plan::current_table;
use ipvs_plan::messages as strerror;
use ipvs_plan::rules::op_line;
use ipvs_plan::{plan, Plan, VirtualServer};

/// The default dummy interface, whose addresses are never node addresses.
pub const DUMMY_INTERFACE: &str = node::DEFAULT_INTERFACE;

/// What one sync will do, decided before any write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPlan {
    /// The planner's writes and conflicts.
    pub plan: Plan,
    /// The services it owns now: recorded and present in the table.
    pub owned: HashSet<ServiceId>,
    /// TCP real servers that went but still have connections: kept at
    /// weight 0 for now (a later sync removes them once idle).
    pub draining: Vec<Draining>,
}

impl SyncPlan {
    /// What to record before writing: what it owns and what it creates.
    pub fn before_writes(&self) -> HashSet<ServiceId> {
        let mut ids = self.owned.clone();
        for op in &self.plan.ops {
            if let Op::AddService(s) = op {
                ids.insert(s.id);
            }
        }
        ids
    }
}

/// Plans a sync: the services recorded in the state file count as owned
/// only while the table has them; real servers that went are removed
/// gracefully ([`graceful::apply`]).
pub fn plan_sync(
    desired: &[VirtualServer],
    current: &[VirtualServer],
    recorded: &HashSet<ServiceId>,
) -> SyncPlan {
    let owned: HashSet<ServiceId> = current
        .iter()
        .map(|v| v.service.id)
        .filter(|id| recorded.contains(id))
        .collect();
    let mut plan = plan(desired, current, |id| owned.contains(id));
    let draining = graceful::apply(&mut plan, current);
    SyncPlan {
        plan,
        owned,
        draining,
    }
}

/// Splits the writes into the two batches: new services first, then the
/// rest.
pub fn batches(ops: &[Op]) -> (Vec<Op>, Vec<Op>) {
    ops.iter()
        .cloned()
        .partition(|op| matches!(op, Op::AddService(_)))
}

fn read_source(source: &str, io: &mut Io) -> Result<String, String> {
    let mut text = String::new();
    let result = if source == "-" {
        io.input.read_to_string(&mut text)
    } else {
        std::fs::File::open(source).and_then(|mut f| f.read_to_string(&mut text))
    };
    result.map_err(|e| format!("cannot read {source}: {e}"))?;
    Ok(text)
}

/// Reads and maps the dump named by `args` (no kernel involved).
pub fn desired_table(args: &Args, source: &str, io: &mut Io) -> Result<Mapped, String> {
    let text = read_source(source, io)?;
    let objects = mapping::read_objects(&text)?;
    let ips = super::node_ips(args)?;
    let node = Node {
        ips,
        name: args.node_name.clone().or_else(super::host_name),
        scheduler: args.scheduler.clone(),
    };
    let mut mapped = mapping::map(&objects, &node)?;
    if !objects.ignored_kinds.is_empty() {
        mapped.warnings.push(format!(
            "ignored items of kind {}",
            objects.ignored_kinds.join(", ")
        ));
    }
    Ok(mapped)
}

/// What a sync needs of IPVS: the table, and a way to send writes. A
/// [`Handle`] is the real one; tests put an in-memory table behind it.
pub trait Kernel {
    /// The whole table: every virtual service with its real servers.
    fn table(&mut self) -> Result<Vec<VirtualServer>, ipvs_netlink::Error>;
    /// Sends `ops` in order, one result each (see [`Handle::apply`]).
    fn apply(&mut self, ops: &[Op]) -> Result<Vec<ipvs_netlink::Result<()>>, ipvs_netlink::Error>;
    /// The virtual services the table has (after a write failed, to bind
    /// only the addresses of services that are there).
    fn service_ids(&mut self) -> Result<HashSet<ServiceId>, ipvs_netlink::Error> {
        Ok(self.table()?.iter().map(|v| v.service.id).collect())
    }
}

impl Kernel for Handle {
    fn table(&mut self) -> Result<Vec<VirtualServer>, ipvs_netlink::Error> {
        current_table(self)
    }

    fn apply(&mut self, ops: &[Op]) -> Result<Vec<ipvs_netlink::Result<()>>, ipvs_netlink::Error> {
        Handle::apply(self, ops)
    }

    fn service_ids(&mut self) -> Result<HashSet<ServiceId>, ipvs_netlink::Error> {
        Ok(self.services()?.iter().map(|s| s.id).collect())
    }
}

/// What one sync step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// 0: the table matches; 1: a conflict or a failed write; 2 would be
    /// a bad input, which [`step`] never sees.
    pub code: i32,
    /// The planned writes and conflicts, and what it owned before them.
    pub sync: SyncPlan,
    /// The writes sent to the kernel (0 on a dry run or a no-op sync).
    pub sent: usize,
    /// The writes the kernel refused.
    pub failed: usize,
    /// Whether the sync broke off: the table could not be read, the
    /// state file or a batch could not be written, or the addresses could
    /// not be bound.
    pub error: bool,
    /// What changed on the dummy interface, one line each.
    pub bound: Vec<String>,
    /// How long each of its steps took, in order.
    pub phases: Phases,
}

/// The time each step of a sync took, in the order they ran (for the
/// `--verbose` log and the benchmark).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Phases(pub Vec<(&'static str, Duration)>);

impl Phases {
    /// Notes that `name` ran from `since` until now; returns now, the
    /// start of the next step.
    pub fn done(&mut self, name: &'static str, since: Instant) -> Instant {
        let now = Instant::now();
        self.0.push((name, now - since));
        now
    }

    /// `name N ms, ...`, in order.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|(name, d)| format!("{name} {} ms", d.as_millis()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One sync of a mapped table: read the kernel's table, plan over what
/// is owned, report conflicts on `io.err` (each prefixed with `prefix`),
/// then print the plan (`dry_run`) or record and send it, then bind the
/// addresses of the services now present on `dummy` (when given; see
/// [`node`] for the order of the steps). Failures are reported on
/// `io.err` and in the outcome; nothing panics.
pub fn step(
    kernel: &mut impl Kernel,
    mapped: &Mapped,
    state: &mut StateFile,
    dry_run: bool,
    dummy: Option<&mut node::Dummy>,
    prefix: &str,
    io: &mut Io,
) -> Outcome {
    let mut phases = Phases::default();
    let started = Instant::now();
    let current = match kernel.table() {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(io.err, "{}", strerror::describe(&e));
            return Outcome {
                code: 1,
                sync: SyncPlan {
                    plan: Plan::default(),
                    owned: HashSet::new(),
                    draining: Vec::new(),
                },
                sent: 0,
                failed: 0,
                error: true,
                bound: Vec::new(),
                phases,
            };
        }
    };
    let at = phases.done("table", started);
    let sync = plan_sync(&mapped.servers(), &current, &state.recorded);
    let at = phases.done("plan", at);
    let mut out = Outcome {
        code: 0,
        sync,
        sent: 0,
        failed: 0,
        error: false,
        bound: Vec::new(),
        phases,
    };
    for id in &out.sync.plan.conflicts {
        let origin = mapped
            .desired
            .iter()
            .find(|d| d.server.service.id == *id)
            .map_or("?", |d| d.origin.as_str());
        let _ = writeln!(
            io.err,
            "{prefix}{id} ({origin}) is held by a virtual service ipvsadm-rs did not create: left alone"
        );
        out.code = 1;
    }
    if dry_run {
        for op in &out.sync.plan.ops {
            let _ = writeln!(io.out, "{}", op_line(op));
        }
        return out;
    }
    let written = write(kernel, &out.sync, state, io);
    let at = out.phases.done("write", at);
    match written {
        Ok(w) => {
            out.sent = w.sent;
            out.failed = w.failed;
            if w.failed > 0 {
                out.code = 1;
            }
        }
        Err((msg, w)) => {
            out.sent = w.sent;
            out.failed = w.failed;
            let _ = writeln!(io.err, "{prefix}{msg}");
            out.code = 1;
            out.error = true;
            return out;
        }
    }
    if let Some(dummy) = dummy {
        bind_addresses(kernel, mapped, &mut out, dummy, prefix, io);
        out.phases.done("addresses", at);
    }
    if !out.sync.draining.is_empty() {
        let _ = writeln!(
            io.err,
            "{prefix}{} real server(s) with open TCP connections kept at weight 0; a later sync removes them once idle",
            out.sync.draining.len()
        );
    }
    out
}

/// Binds on `dummy` the addresses of the desired services but conflicts
/// (after a refused write, only of those the table has: a creation may
/// have failed), once their services are there: traffic to a bound
/// address with no service would be refused by the node itself.
fn bind_addresses(
    kernel: &mut impl Kernel,
    mapped: &Mapped,
    out: &mut Outcome,
    dummy: &mut node::Dummy,
    prefix: &str,
    io: &mut Io,
) {
    let conflicts = &out.sync.plan.conflicts;
    let wanted = if out.failed == 0 {
        node::wanted_addresses(mapped, |id| !conflicts.contains(id))
    } else {
        match kernel.service_ids() {
            Ok(present) => {
                node::wanted_addresses(mapped, |id| present.contains(id) && !conflicts.contains(id))
            }
            Err(e) => {
                let _ = writeln!(io.err, "{}", strerror::describe(&e));
                out.code = 1;
                out.error = true;
                return;
            }
        }
    };
    match dummy.bind(&wanted) {
        Ok(changes) => {
            out.bound = node::describe(&changes, dummy.name(), false);
            for e in &changes.errors {
                let _ = writeln!(io.err, "{prefix}{e}");
                out.code = 1;
            }
        }
        Err(msg) => {
            let _ = writeln!(io.err, "{prefix}{msg}");
            out.code = 1;
            out.error = true;
        }
    }
}

/// Runs one `--from-k8s` sync. The dump is read and mapped before IPVS is
/// opened with `open` (whose error is ipvsadm's message). Exit 0 when the
/// table matches the dump, 1 when a desired service was left alone as a
/// conflict, a write, an address or a sysctl failed, 2 for a bad command
/// line, dump or state file, no IPVS, kube-proxy in IPVS mode (without
/// `--force`) or an `--interface` that is not a dummy (nothing written
/// then).
pub fn run(open: impl FnOnce() -> Result<Handle, String>, args: &Args, io: &mut Io) -> i32 {
    let Some(source) = args.source.as_deref() else {
        let _ = writeln!(
            io.err,
            "ipvsadm-rs: --from-k8s needs a dump to read (FILE, or - for stdin)"
        );
        return 2;
    };
    let fail = |io: &mut Io, msg: &str| {
        let _ = writeln!(io.err, "ipvsadm-rs: --from-k8s {source}: {msg}");
    };
    let mapped = match desired_table(args, source, io) {
        Ok(m) => m,
        Err(msg) => {
            fail(io, &msg);
            return 2;
        }
    };
    for w in &mapped.warnings {
        fail(io, &format!("warning: {w}"));
    }
    // Two reconcilers must not fight: checked before anything is written.
    match node::kube_proxy_check(args.node.force, args.dry_run) {
        Ok(None) => {}
        Ok(Some(warning)) => fail(io, &warning),
        Err(msg) => {
            fail(io, &msg);
            return 2;
        }
    }
    // A dry run changes nothing, so it takes no lock.
    let mut state = match StateFile::open(&args.state, !args.dry_run) {
        Ok(s) => s,
        Err(msg) => {
            fail(io, &msg);
            return 2;
        }
    };
    let mut handle = match open() {
        Ok(h) => h,
        Err(message) => {
            let _ = io.err.write_all(message.as_bytes());
            return 2;
        }
    };
    // The dummy interface before any write: one of that name that is not
    // a dummy stops the run here, with nothing written. IPVS is loaded
    // now, so its sysctls exist.
    let (mut dummy, sysctls) = match node::prepare(&args.node, args.dry_run) {
        Ok(p) => p,
        Err(msg) => {
            fail(io, &msg);
            return 2;
        }
    };
    for note in &sysctls.notes {
        fail(io, note);
    }
    let prefix = format!("ipvsadm-rs: --from-k8s {source}: ");
    let outcome = step(
        &mut handle,
        &mapped,
        &mut state,
        args.dry_run,
        dummy.as_mut(),
        &prefix,
        io,
    );
    let mut code = outcome.code;
    if sysctls.failed {
        code = code.max(1);
    }
    if args.dry_run && !outcome.error {
        let conflicts = &outcome.sync.plan.conflicts;
        let wanted = node::wanted_addresses(&mapped, |id| !conflicts.contains(id));
        let interface = args.node.interface.as_str();
        match node::dummy::plan(interface, &wanted) {
            Ok(changes) => {
                for line in node::describe(&changes, interface, true) {
                    fail(io, &line);
                }
            }
            Err(msg) => {
                fail(io, &msg);
                code = code.max(1);
            }
        }
    }
    code
}

/// How the writes of one sync went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// The writes sent.
    pub sent: usize,
    /// The writes the kernel refused.
    pub failed: usize,
}

/// Carries out a planned sync: records what it owns and is about to
/// create, sends the writes (new services first; no real server to a
/// service whose creation failed), then records what it owns after them.
/// Each failed write is reported on `io.err` as its restore line and the
/// kernel's reason. The count of writes sent and refused; `Err` (with
/// the counts so far) when the state file could not be written or a
/// batch could not be sent.
pub fn write(
    kernel: &mut impl Kernel,
    sync: &SyncPlan,
    state: &mut StateFile,
    io: &mut Io,
) -> Result<Written, (String, Written)> {
    let mut done = Written::default();
    // Record first: a crash after this cannot orphan what is created next.
    let mut owned = sync.before_writes();
    state
        .record(owned.clone())
        .map_err(|msg| (format!("{msg}; nothing written"), done))?;
    if sync.plan.ops.is_empty() {
        return Ok(done);
    }
    let (adds, rest) = batches(&sync.plan.ops);
    let mut failed_adds: HashSet<ServiceId> = HashSet::new();
    for (n, batch) in [adds, rest].into_iter().enumerate() {
        let batch: Vec<Op> = if n == 0 {
            batch
        } else {
            batch
                .into_iter()
                .filter(|op| !matches!(op, Op::AddDestination(id, _) if failed_adds.contains(id)))
                .collect()
        };
        if batch.is_empty() {
            continue;
        }
        let results = kernel.apply(&batch).map_err(|e| {
            (
                format!("{e}; the table may be partly changed: run the sync again"),
                done,
            )
        })?;
        done.sent += batch.len();
        for (op, result) in batch.iter().zip(results) {
            match (op, result) {
                (_, Err(e)) => {
                    let _ = writeln!(io.err, "{}: {}", op_line(op), strerror::describe(&e));
                    if let Op::AddService(s) = op {
                        failed_adds.insert(s.id);
                    }
                    done.failed += 1;
                }
                (Op::DeleteService(id), Ok(())) => {
                    owned.remove(id);
                }
                _ => {}
            }
        }
    }
    for id in &failed_adds {
        owned.remove(id);
    }
    state.record(owned).map_err(|msg| (msg, done))?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipvs_netlink::{Destination, Service, ServiceFlags};

    fn vs(vip: &str, rs: &[&str]) -> VirtualServer {
        VirtualServer {
            service: Service::new(ServiceId::tcp(vip.parse().unwrap()), "rr"),
            dests: rs
                .iter()
                .map(|a| Destination::new(a.parse().unwrap()))
                .collect(),
        }
    }

    fn listed(mut v: VirtualServer) -> VirtualServer {
        v.service.flags |= ServiceFlags::HASHED;
        v
    }

    fn id(a: &str) -> ServiceId {
        ServiceId::tcp(a.parse().unwrap())
    }

    #[test]
    fn it_owns_only_what_it_recorded_and_the_table_still_has() {
        let current = vec![
            listed(vs("10.0.0.1:80", &["10.1.0.1:80"])), // ours, still wanted
            listed(vs("10.0.0.2:80", &[])),              // ours, Service deleted
            listed(vs("10.0.0.9:80", &[])),              // foreign
            listed(vs("10.0.0.3:80", &[])),              // foreign, wanted: conflict
        ];
        // 10.0.0.4 was recorded before a crash, never created.
        let recorded: HashSet<ServiceId> =
            ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.4:80"].map(id).into();
        let desired = vec![
            vs("10.0.0.1:80", &["10.1.0.1:80", "10.1.0.2:80"]),
            vs("10.0.0.3:80", &["10.1.0.3:80"]),
            vs("10.0.0.5:80", &["10.1.0.5:80"]),
        ];
        let s = plan_sync(&desired, &current, &recorded);
        assert_eq!(s.owned, ["10.0.0.1:80", "10.0.0.2:80"].map(id).into());
        assert_eq!(s.plan.conflicts, vec![id("10.0.0.3:80")]);
        assert_eq!(
            s.plan.ops,
            vec![
                Op::AddDestination(id("10.0.0.1:80"), desired[0].dests[1].clone()),
                Op::AddService(desired[2].service.clone()),
                Op::AddDestination(id("10.0.0.5:80"), desired[2].dests[0].clone()),
                Op::DeleteService(id("10.0.0.2:80")),
            ]
        );
        // Recorded before writing: what it owns plus what it creates.
        assert_eq!(
            s.before_writes(),
            ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.5:80"].map(id).into()
        );
        let (adds, rest) = batches(&s.plan.ops);
        assert_eq!(adds, vec![s.plan.ops[1].clone()]);
        assert_eq!(rest.len(), 3);
    }

    #[test]
    fn a_busy_tcp_real_server_that_went_is_drained_not_deleted() {
        let mut busy = Destination::new("10.1.0.2:80".parse().unwrap());
        busy.active_conns = 1;
        let mut have = listed(vs("10.0.0.1:80", &["10.1.0.1:80"]));
        have.dests.push(busy.clone());
        let desired = vec![vs("10.0.0.1:80", &["10.1.0.1:80"])];
        let recorded: HashSet<ServiceId> = [id("10.0.0.1:80")].into();
        let s = plan_sync(&desired, std::slice::from_ref(&have), &recorded);
        let mut drained = busy.clone().weight(0);
        drained.active_conns = 0;
        assert_eq!(
            s.plan.ops,
            vec![Op::EditDestination(id("10.0.0.1:80"), drained.clone())]
        );
        assert_eq!(s.draining.len(), 1);
        assert_eq!(s.draining[0].dest, busy.socket_addr());
        // Still busy at weight 0: nothing to send, still draining.
        let mut waiting = drained.clone();
        waiting.active_conns = 1;
        have.dests[1] = waiting;
        let s = plan_sync(&desired, std::slice::from_ref(&have), &recorded);
        assert!(s.plan.ops.is_empty());
        assert_eq!(s.draining.len(), 1);
        // Idle: deleted. A foreign service's real servers are never touched.
        have.dests[1] = drained;
        let s = plan_sync(&desired, std::slice::from_ref(&have), &recorded);
        assert_eq!(
            s.plan.ops,
            vec![Op::DeleteDestination(id("10.0.0.1:80"), busy.socket_addr())]
        );
        assert!(s.draining.is_empty());
        let s = plan_sync(&desired, &[have], &HashSet::new());
        assert!(s.plan.ops.is_empty() && s.draining.is_empty());
    }

    #[test]
    fn a_table_that_matches_needs_no_write_and_no_new_record() {
        let desired = vec![vs("10.0.0.1:80", &["10.1.0.1:80"])];
        let current: Vec<_> = desired.iter().cloned().map(listed).collect();
        let recorded: HashSet<ServiceId> = [id("10.0.0.1:80")].into();
        let s = plan_sync(&desired, &current, &recorded);
        assert!(s.plan.ops.is_empty());
        assert_eq!(s.before_writes(), recorded);
    }
}
