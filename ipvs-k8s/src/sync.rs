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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipvs_netlink::{Destination, Handle, Op, Service, ServiceId};

use super::graceful::{self, Draining};
use super::mapping::{self, Desired, Mapped, Node};
use super::node;
use super::ownership::{self, settings, Recorded, Records, StateFile};
use super::Args;
use crate::Io;
use ipvs_plan::current_table;
use ipvs_plan::{Plan, PlanError, Planner, VirtualServer, VirtualServerSpec};
use ipvsadm_compat::input;
use ipvsadm_compat::messages as strerror;
use ipvsadm_compat::rules::op_line;

/// The default dummy interface, whose addresses are never node addresses.
pub const DUMMY_INTERFACE: &str = node::DEFAULT_INTERFACE;

/// What one sync will do, decided before any write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPlan {
    /// The planner's writes and conflicts.
    pub plan: Plan,
    /// The services it owns now: recorded, present in the table, and
    /// with the settings it last wrote.
    pub owned: HashSet<ServiceId>,
    /// Recorded services the table has with other settings than the ones
    /// it last wrote: recreated or edited by another tool, so left alone
    /// and no longer recorded (see [`super::ownership`]), sorted.
    pub disowned: Vec<ServiceId>,
    /// The settings the table shows of each owned service.
    pub settings: HashMap<ServiceId, String>,
    /// TCP real servers that went but still have connections: kept at
    /// weight 0 for now (a later sync removes them once idle).
    pub draining: Vec<Draining>,
    /// With `--adopt`: the services of the table it did not own that have
    /// exactly the settings the mapping writes, now owned ([`super::adopt`]),
    /// sorted.
    pub adopted: Vec<ServiceId>,
    /// With `--adopt`: the services of the table it does not own and did
    /// not adopt, each with why (the fields that differ; `None`: no
    /// Service wants it), sorted.
    pub not_adopted: Vec<(ServiceId, Option<String>)>,
}

impl SyncPlan {
    /// What to record before writing: what it owns, with the settings it
    /// has and any it is about to edit to, and what it creates.
    pub fn before_writes(&self) -> Records {
        let mut records: Records = self
            .settings
            .iter()
            .map(|(id, s)| (*id, Recorded::one(s.clone())))
            .collect();
        for op in &self.plan.ops {
            match op {
                Op::AddService(s) => {
                    records.insert(s.id, Recorded::one(settings(s)));
                }
                Op::EditService(s) => {
                    if let Some(Recorded::Settings(all)) = records.get_mut(&s.id) {
                        all.insert(settings(s));
                    }
                }
                _ => {}
            }
        }
        records
    }
}

/// Plans a sync: a service recorded in the state file counts as owned
/// only while the table has it with the settings last written (for a
/// record without settings, of format 1: the settings desired now);
/// real servers that went are removed gracefully ([`graceful::apply`]).
/// A desired table with a service or real server twice is refused
/// ([`ipvs_plan::plan`]; the mapping never makes one).
pub fn plan_sync(
    desired: &[VirtualServer],
    current: &[VirtualServer],
    recorded: &Records,
) -> Result<SyncPlan, PlanError> {
    plan_sync_adopting(desired, current, recorded, false)
}

/// [`plan_sync`], and with `adopt` (`--adopt`, [`super::adopt`]): a
/// service of the table it does not own (not recorded, or recorded with
/// other settings) whose settings are exactly those the mapping writes
/// for it is adopted, owned from this plan on; any other is left alone
/// and listed in `not_adopted` with why.
pub fn plan_sync_adopting(
    desired: &[VirtualServer],
    current: &[VirtualServer],
    recorded: &Records,
    adopt: bool,
) -> Result<SyncPlan, PlanError> {
    plan_sync_of(desired.iter(), current, recorded, adopt)
}

/// [`plan_sync_adopting`] of the mapping's table as it is, without a
/// copy of its virtual services (at 10,000 Services x 4, some 8 MiB that
/// lived through the plan).
fn plan_sync_desired(
    desired: &[Desired],
    current: &[VirtualServer],
    recorded: &Records,
    adopt: bool,
) -> Result<SyncPlan, PlanError> {
    plan_sync_of(desired.iter().map(|d| &d.server), current, recorded, adopt)
}

fn plan_sync_of<'a>(
    desired: impl Iterator<Item = &'a VirtualServer> + Clone,
    current: &[VirtualServer],
    recorded: &Records,
    adopt: bool,
) -> Result<SyncPlan, PlanError> {
    let wanted: HashMap<ServiceId, &ipvs_netlink::Service> = desired
        .clone()
        .map(|v| (v.service.id, &v.service))
        .collect();
    let mut owned = HashSet::new();
    let mut disowned = Vec::new();
    let mut shown = HashMap::new();
    let mut adopted = Vec::new();
    let mut not_adopted = Vec::new();
    for v in current {
        let id = v.service.id;
        let record = recorded.get(&id);
        if record.is_none() && !adopt {
            continue;
        }
        let now = settings(&v.service);
        let ours = record.map(|record| match record {
            Recorded::Settings(all) => all.contains(&now),
            Recorded::Unknown => wanted.get(&id).map(|s| settings(s)) == Some(now.clone()),
        });
        if ours == Some(true) {
            owned.insert(id);
            shown.insert(id, now);
            continue;
        }
        if ours == Some(false) {
            disowned.push(id);
        }
        if !adopt || ownership::id_line(&id).is_none() {
            continue;
        }
        match wanted.get(&id) {
            Some(want) => {
                let why = super::adopt::differences(&v.service, want);
                if why.is_empty() {
                    disowned.retain(|d| *d != id);
                    owned.insert(id);
                    shown.insert(id, now);
                    adopted.push(id);
                } else {
                    not_adopted.push((id, Some(why.join("; "))));
                }
            }
            None if ours.is_none() => not_adopted.push((id, None)),
            None => {}
        }
    }
    disowned.sort_by_key(|id| id.to_string());
    adopted.sort_by_key(|id| id.to_string());
    not_adopted.sort_by_key(|(id, _)| id.to_string());
    // As `ipvs_plan::plan`, from the virtual services as they are.
    let specs: Vec<VirtualServerSpec> = desired.map(VirtualServerSpec::from).collect();
    let mut plan = Planner::new()
        .owning(|id| owned.contains(id))
        .plan(&specs, current)?;
    drop(specs);
    let draining = graceful::apply(&mut plan, current);
    Ok(SyncPlan {
        plan,
        owned,
        disowned,
        settings: shown,
        draining,
        adopted,
        not_adopted,
    })
}

/// What a sync may plan from instead of the whole table: the last sync
/// went through (every write, no real server left draining), the table
/// is the one it left, and only the virtual services `ids` can be wanted
/// otherwise than it left them ([`mapping::Changes`]).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The virtual services whose desired state may differ from the last
    /// sync's.
    pub ids: &'a HashSet<ServiceId>,
    /// The conflicts of the last sync (other tools' virtual services at
    /// addresses a Service wants).
    pub conflicts: &'a HashSet<ServiceId>,
}

/// [`plan_sync`] of the virtual services of `scope` alone, the rest of
/// the plan carried over from the last sync: the same plan as
/// [`plan_sync`] of the whole tables when the scope's promise holds.
/// Outside the scope, a recorded service the table has is owned with
/// the one set of settings recorded (the last sync wrote them, and
/// nothing of ours is being edited), a conflict stays one, and nothing is
/// written.
pub fn plan_sync_scoped(
    desired: &[Desired],
    current: &[VirtualServer],
    recorded: &Records,
    scope: Scope<'_>,
) -> Result<SyncPlan, PlanError> {
    let inside = |id: &ServiceId| scope.ids.contains(id);
    let want: Vec<VirtualServer> = desired
        .iter()
        .filter(|d| inside(&d.server.service.id))
        .map(|d| d.server.clone())
        .collect();
    let have: Vec<VirtualServer> = current
        .iter()
        .filter(|v| inside(&v.service.id))
        .cloned()
        .collect();
    let mut sync = plan_sync_adopting(&want, &have, recorded, false)?;
    // Room for every service outside the scope at once.
    sync.owned.reserve(current.len());
    sync.settings.reserve(current.len());
    let mut outside = Vec::new();
    for v in current.iter().filter(|v| !inside(&v.service.id)) {
        let id = v.service.id;
        match recorded.get(&id) {
            Some(Recorded::Settings(all)) if all.len() == 1 => {
                if let Some(one) = all.iter().next() {
                    sync.owned.insert(id);
                    sync.settings.insert(id, one.clone());
                }
            }
            Some(_) => outside.push(v.clone()),
            None => {}
        }
    }
    if !outside.is_empty() {
        // Records the last sync could not make exact (of format 1, or
        // of an edit): checked as the whole plan checks them.
        let wanted: Vec<VirtualServer> = desired
            .iter()
            .filter(|d| !inside(&d.server.service.id))
            .map(|d| d.server.clone())
            .filter(|v| outside.iter().any(|o| o.service.id == v.service.id))
            .collect();
        let rest = plan_sync_adopting(&wanted, &outside, recorded, false)?;
        sync.owned.extend(rest.owned);
        sync.settings.extend(rest.settings);
        sync.disowned.extend(rest.disowned);
        sync.disowned.sort_by_key(|id| id.to_string());
    }
    let conflicts: HashSet<ServiceId> = sync
        .plan
        .conflicts
        .iter()
        .chain(scope.conflicts.iter().filter(|id| !inside(id)))
        .copied()
        .collect();
    // In the order of the desired table, as the whole plan lists them.
    sync.plan.conflicts = if conflicts.is_empty() {
        Vec::new()
    } else {
        desired
            .iter()
            .map(|d| d.server.service.id)
            .filter(|id| conflicts.contains(id))
            .collect()
    };
    Ok(sync)
}

/// Splits the writes into the two batches: new services first, then the
/// rest.
pub fn batches(ops: &[Op]) -> (Vec<Op>, Vec<Op>) {
    ops.iter()
        .cloned()
        .partition(|op| matches!(op, Op::AddService(_)))
}

/// The text of the dump `source` (`-`: standard input), at most `limit`
/// bytes ([`input::max_input`]): a longer one is refused whole.
fn read_source(source: &str, io: &mut Io, limit: u64) -> Result<String, String> {
    let bytes = if source == "-" {
        input::read_all(io.input, limit)
    } else {
        std::fs::File::open(source).and_then(|mut f| input::read_all(&mut f, limit))
    };
    let bytes = bytes
        .map_err(|e| format!("cannot read {source}: {e}"))?
        .ok_or_else(|| input::too_long("the dump", limit))?;
    String::from_utf8(bytes)
        .map_err(|_| format!("cannot read {source}: stream did not contain valid UTF-8"))
}

/// Reads and maps the dump named by `args` (no kernel involved).
pub fn desired_table(args: &Args, source: &str, io: &mut Io) -> Result<Mapped, String> {
    let text = read_source(source, io, input::max_input()?)?;
    let objects = mapping::read_objects(&text)?;
    let ips = super::node_ips(args)?;
    let node = Node {
        ips,
        name: args.node_name.clone().or_else(super::host_name),
        zone: args.node_zone.clone(),
        scheduler: args.scheduler.clone(),
    };
    let mut mapped = mapping::map(&objects, &node);
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
    /// The virtual services without their real servers (one dump).
    fn services(&mut self) -> Result<Vec<Service>, ipvs_netlink::Error> {
        Ok(self.table()?.into_iter().map(|v| v.service).collect())
    }
    /// The real servers of one virtual service (none when it is gone).
    fn destinations(&mut self, id: &ServiceId) -> Result<Vec<Destination>, ipvs_netlink::Error> {
        let found = self.table()?.into_iter().find(|v| v.service.id == *id);
        Ok(found.map(|v| v.dests).unwrap_or_default())
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
        Ok(Handle::services(self)?.iter().map(|s| s.id).collect())
    }

    fn services(&mut self) -> Result<Vec<Service>, ipvs_netlink::Error> {
        Handle::services(self)
    }

    fn destinations(&mut self, id: &ServiceId) -> Result<Vec<Destination>, ipvs_netlink::Error> {
        Handle::destinations(self, id)
    }
}

/// How many turns a resync's check of the real servers takes at most
/// ([`resync_table`]): each resync reads the real servers of a tenth of
/// the services it owns.
pub const RESYNC_TURNS: usize = 10;

/// Under this many owned services, each resync reads the real servers of
/// all of them ([`resync_table`]).
pub const RESYNC_ALL_BELOW: usize = 200;

/// At most about this many real-server lists are read per resync for
/// its turn ([`resync_table`]): above [`RESYNC_TURNS`] times as many
/// owned services, the turns are more (one destination dump costs about
/// 0.2 ms under emulation: a tenth of 10,000 services would be 1,000 of
/// them, 0.2 s, at every resync).
pub const RESYNC_READ_MAX: usize = 500;

/// In how many turns a resync reads the real servers of `ours` owned
/// services: 1 under [`RESYNC_ALL_BELOW`], then [`RESYNC_TURNS`], then
/// as many as keep each turn within [`RESYNC_READ_MAX`].
pub fn resync_turns(ours: usize) -> usize {
    if ours < RESYNC_ALL_BELOW {
        1
    } else {
        RESYNC_TURNS.max(ours.div_ceil(RESYNC_READ_MAX))
    }
}

/// What a resync read ([`resync_table`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resynced {
    /// The table to plan against: every virtual service as read, the
    /// real servers of ours as read or as known.
    pub table: Vec<VirtualServer>,
    /// How many real-server lists it read.
    pub read: usize,
    /// The virtual services the read found otherwise than known: new,
    /// gone, with other settings, or (of those whose real servers it
    /// read) with other real servers. Every other one is as known, so a
    /// plan of these alone ([`Scope`], with the services that may be
    /// wanted otherwise) is the plan of the whole table read.
    pub drift: HashSet<ServiceId>,
}

/// The table a resync plans against, read with less than a whole dump
/// when the last sync's table is `known`: every virtual service (one
/// dump), and the real servers of the recorded ones (another tool's are
/// never needed: they are not planned) that are new, whose settings are
/// not the known ones, that are in `must` (they may be written), or whose
/// turn it is: the owned services are split in [`resync_turns`] parts
/// ([`RESYNC_TURNS`]; one when fewer than [`RESYNC_ALL_BELOW`]; more
/// above 5,000, each of about [`RESYNC_READ_MAX`]) by a hash of their
/// id, and resync number `turn` reads one part; the other real servers
/// are taken as `known` has them. So a real server changed behind our
/// back (an `ipvsadm -e`) is repaired within that many resyncs, and at
/// once in a table of fewer than [`RESYNC_ALL_BELOW`] services. Returns
/// the table, the number of real-server lists read and what differs
/// from `known` ([`Resynced`]).
pub fn resync_table(
    kernel: &mut impl Kernel,
    known: Vec<VirtualServer>,
    recorded: &HashSet<ServiceId>,
    must: &HashSet<ServiceId>,
    turn: u64,
) -> Result<Resynced, ipvs_netlink::Error> {
    use ipvs_plan::{DestinationSpec, ServiceSpec};
    use std::hash::{Hash, Hasher};
    let services = kernel.services()?;
    let mut known: HashMap<ServiceId, VirtualServer> =
        known.into_iter().map(|v| (v.service.id, v)).collect();
    let ours = services.iter().filter(|s| recorded.contains(&s.id)).count();
    let parts = resync_turns(ours) as u64;
    let mut read = 0;
    let mut drift = HashSet::new();
    let mut table = Vec::with_capacity(services.len());
    for service in services {
        let id = service.id;
        let have = known
            .remove(&id)
            .filter(|k| ServiceSpec::from(&k.service) == ServiceSpec::from(&service));
        if have.is_none() {
            drift.insert(id);
        }
        if !recorded.contains(&id) {
            table.push(VirtualServer {
                service,
                dests: Vec::new(),
            });
            continue;
        }
        let mine = || {
            // SipHash with fixed keys: the same part in every process.
            let mut h = std::collections::hash_map::DefaultHasher::new();
            id.hash(&mut h);
            h.finish() % parts == turn % parts
        };
        let dests = match have {
            Some(k) if !must.contains(&id) && !mine() => k.dests,
            _ => {
                read += 1;
                let dests = kernel.destinations(&id)?;
                if let Some(k) = have {
                    let was: HashSet<DestinationSpec> =
                        k.dests.iter().map(DestinationSpec::from).collect();
                    if dests.len() != k.dests.len()
                        || !dests
                            .iter()
                            .all(|d| was.contains(&DestinationSpec::from(d)))
                    {
                        drift.insert(id);
                    }
                }
                dests
            }
        };
        table.push(VirtualServer { service, dests });
    }
    // Known but no longer in the table.
    drift.extend(known.into_keys());
    Ok(Resynced { table, read, drift })
}

/// The table after a sync whose writes all went through: the table it
/// planned against with its writes applied, as the kernel applied them
/// (the services it did not own as they were). Linear in the writes,
/// not in the table (but for an index of it when there are writes).
pub fn patch_table(table: &mut Vec<VirtualServer>, ops: &[Op]) {
    if ops.is_empty() {
        return;
    }
    let mut at: HashMap<ServiceId, usize> = HashMap::with_capacity(table.len() + ops.len());
    at.extend(table.iter().enumerate().map(|(i, v)| (v.service.id, i)));
    let mut gone = HashSet::new();
    for op in ops {
        match op {
            Op::AddService(s) => {
                gone.remove(&s.id);
                match at.get(&s.id) {
                    Some(&i) => {
                        table[i] = VirtualServer {
                            service: s.clone(),
                            dests: Vec::new(),
                        }
                    }
                    None => {
                        at.insert(s.id, table.len());
                        table.push(VirtualServer {
                            service: s.clone(),
                            dests: Vec::new(),
                        });
                    }
                }
            }
            Op::EditService(s) => {
                if let Some(&i) = at.get(&s.id) {
                    table[i].service = s.clone();
                }
            }
            Op::DeleteService(id) => {
                gone.insert(*id);
            }
            Op::AddDestination(id, d) | Op::EditDestination(id, d) => {
                if let Some(&i) = at.get(id) {
                    let dests = &mut table[i].dests;
                    match dests
                        .iter_mut()
                        .find(|x| x.socket_addr() == d.socket_addr())
                    {
                        Some(x) => *x = d.clone(),
                        None => dests.push(d.clone()),
                    }
                }
            }
            Op::DeleteDestination(id, addr) => {
                if let Some(&i) = at.get(id) {
                    table[i].dests.retain(|x| x.socket_addr() != *addr);
                }
            }
            _ => {}
        }
    }
    if !gone.is_empty() {
        table.retain(|v| !gone.contains(&v.service.id));
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
    /// What the packet path's write did (`None`: no packet path, a dry
    /// run, or the sync broke off before it).
    pub packet: Option<node::nft::Written>,
    /// The addresses of the virtual services it does not own (another
    /// tool's or another instance's): never removed from the dummy
    /// interface.
    pub foreign: BTreeSet<IpAddr>,
    /// What it left alone, what failed and what waits, in the order it
    /// met them.
    pub notes: Vec<Note>,
    /// How long each of its steps took, in order.
    pub phases: Phases,
}

/// Something one sync reports: a service it left alone, a write or an
/// address that failed, real servers left draining. Shown by
/// [`std::fmt::Display`] as one line (without a newline); [`Note::prefixed`]
/// says whether the line is led by the caller's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The kernel's table (or its service list) could not be read: the
    /// error in ipvsadm's words.
    Kernel(String),
    /// A service it owned no longer has the settings it last wrote
    /// (recreated or edited by another tool): left alone, disowned.
    Disowned(ServiceId),
    /// A wanted service is held by a virtual service it did not create.
    Conflict {
        /// The service.
        id: ServiceId,
        /// The Service (and port) that wants it: `namespace/name:port`.
        origin: String,
    },
    /// The kernel refused one write.
    Refused {
        /// The write as a restore line.
        line: String,
        /// The kernel's reason, in ipvsadm's words.
        reason: String,
    },
    /// The sync broke off: the state file or a batch could not be
    /// written, or the dummy interface could not be read or changed.
    Broken(String),
    /// One address could not be bound to or removed from the dummy
    /// interface.
    Address(String),
    /// Real servers with open TCP connections kept at weight 0.
    Draining(usize),
    /// Stale UDP conntrack entries could not be deleted.
    Conntrack(String),
    /// With `--adopt`: a service it did not create, with exactly the
    /// settings the mapping writes, taken over (not a failure).
    Adopted {
        /// The service.
        id: ServiceId,
        /// The Service (and port) that wants it: `namespace/name:port`.
        origin: String,
    },
    /// With `--adopt`: a service it did not create, left alone.
    NotAdopted {
        /// The service.
        id: ServiceId,
        /// The Service (and port) that wants it (`None`: none does; not
        /// a failure then).
        origin: Option<String>,
        /// The fields in which it differs from what the mapping writes.
        why: String,
    },
}

impl Note {
    /// Whether the line is led by the caller's prefix (all but the
    /// kernel's errors, which carry ipvsadm's own words, and a refused
    /// write, which starts with its restore line).
    pub fn prefixed(&self) -> bool {
        !matches!(self, Note::Kernel(_) | Note::Refused { .. })
    }

    /// Whether it makes the sync's exit code 1: all but an adoption and a
    /// service no Service wants left alone.
    pub fn fails(&self) -> bool {
        !matches!(
            self,
            Note::Adopted { .. } | Note::NotAdopted { origin: None, .. }
        )
    }
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::Kernel(msg) | Note::Broken(msg) | Note::Address(msg) => f.write_str(msg),
            Note::Disowned(id) => write!(
                f,
                "{id} no longer has the settings ipvsadm-rs last wrote (recreated or edited by another tool): left alone, no longer ipvsadm-rs's"
            ),
            Note::Conflict { id, origin } => write!(
                f,
                "{id} ({}) is held by a virtual service ipvsadm-rs did not create: left alone",
                crate::escape_controls(origin)
            ),
            Note::Adopted { id, origin } => write!(
                f,
                "{id} ({}) adopted: it has exactly the settings the mapping writes; now ipvsadm-rs's (recorded, its real servers synced to the endpoints)",
                crate::escape_controls(origin)
            ),
            Note::NotAdopted {
                id,
                origin: Some(origin),
                why,
            } => write!(
                f,
                "{id} ({}) is held by a virtual service ipvsadm-rs did not create: left alone, not adopted: {why}",
                crate::escape_controls(origin)
            ),
            Note::NotAdopted { id, origin: None, .. } => write!(
                f,
                "{id} is a virtual service ipvsadm-rs did not create and no Service wants: left alone, not adopted"
            ),
            Note::Refused { line, reason } => write!(f, "{line}: {reason}"),
            Note::Conntrack(msg) => write!(f, "stale UDP conntrack entries not deleted: {msg}"),
            Note::Draining(n) => write!(
                f,
                "{n} real server(s) with open TCP connections kept at weight 0; a later sync removes them once idle"
            ),
        }
    }
}

/// Writes `notes` to `err`, one line each, led by `prefix` where
/// [`Note::prefixed`].
pub fn print_notes(notes: &[Note], prefix: &str, err: &mut dyn std::io::Write) {
    for note in notes {
        let lead = if note.prefixed() { prefix } else { "" };
        let _ = writeln!(err, "{lead}{note}");
    }
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

/// The node side a sync writes besides IPVS: the dummy interface and the
/// packet path, each when given.
#[derive(Default)]
pub struct NodeSide<'a> {
    /// The dummy interface virtual addresses are bound to.
    pub dummy: Option<&'a mut dyn node::Addresses>,
    /// The packet path's nftables table.
    pub packet: Option<&'a mut node::nft::PacketPath>,
    /// The conntrack table, where stale UDP entries are deleted.
    pub conntrack: Option<&'a mut dyn node::conntrack::Conntrack>,
}

/// One sync of a mapped table: read the kernel's table, plan over what
/// is owned and note the conflicts, then (unless `dry_run`: the plan is
/// in the outcome) record and send the plan, then bind the addresses of
/// the services now present on the dummy interface and write the packet
/// path's elements (each when `side` has it; see [`node`] for the order
/// of the steps). What it left alone and what failed are in the
/// outcome's notes; it writes nothing but the kernel, the state file and
/// the interface, and nothing panics.
pub fn step(
    kernel: &mut impl Kernel,
    mapped: &Mapped,
    state: &mut StateFile,
    dry_run: bool,
    side: NodeSide<'_>,
) -> Outcome {
    step_scoped(kernel, mapped, state, dry_run, side, None)
}

/// [`step`], planning only the virtual services of `scope` when given
/// ([`plan_sync_scoped`]; never with `--adopt` pending, which plans the
/// whole table).
pub fn step_scoped(
    kernel: &mut impl Kernel,
    mapped: &Mapped,
    state: &mut StateFile,
    dry_run: bool,
    side: NodeSide<'_>,
    scope: Option<Scope<'_>>,
) -> Outcome {
    let started = Instant::now();
    let read = kernel.table();
    let mut phases = Phases::default();
    phases.done("table", started);
    let current = match read {
        Ok(t) => t,
        Err(e) => return Outcome::broken(Note::Kernel(strerror::describe(&e)), phases),
    };
    let mut out = step_against(kernel, &current, mapped, state, dry_run, side, scope);
    phases.0.append(&mut out.phases.0);
    out.phases = phases;
    out
}

impl Outcome {
    /// The outcome of a sync that broke off before planning: `note` says
    /// why, nothing was written.
    pub fn broken(note: Note, phases: Phases) -> Outcome {
        Outcome {
            code: 1,
            sync: SyncPlan {
                plan: Plan::default(),
                owned: HashSet::new(),
                disowned: Vec::new(),
                settings: HashMap::new(),
                draining: Vec::new(),
                adopted: Vec::new(),
                not_adopted: Vec::new(),
            },
            sent: 0,
            failed: 0,
            error: true,
            bound: Vec::new(),
            packet: None,
            foreign: BTreeSet::new(),
            notes: vec![note],
            phases,
        }
    }
}

/// [`step_scoped`] against `current`, the table as the caller read it
/// (or knows it: the live loop keeps the table the last sync left, and
/// a resync reads only part of it, [`resync_table`]); its phases start
/// at the plan.
pub fn step_against(
    kernel: &mut impl Kernel,
    current: &[VirtualServer],
    mapped: &Mapped,
    state: &mut StateFile,
    dry_run: bool,
    side: NodeSide<'_>,
    scope: Option<Scope<'_>>,
) -> Outcome {
    let mut phases = Phases::default();
    let at = Instant::now();
    let broken = Outcome::broken;
    let planned = match scope.filter(|_| !state.adopt) {
        Some(scope) => plan_sync_scoped(&mapped.desired, current, &state.recorded, scope),
        None => plan_sync_desired(&mapped.desired, current, &state.recorded, state.adopt),
    };
    let sync = match planned {
        Ok(s) => s,
        Err(e) => return broken(Note::Broken(format!("cannot plan: {e}")), phases),
    };
    let at = phases.done("plan", at);
    let foreign = foreign_addresses(current, &sync.owned);
    let mut out = Outcome {
        code: 0,
        sync,
        sent: 0,
        failed: 0,
        error: false,
        bound: Vec::new(),
        packet: None,
        foreign,
        notes: Vec::new(),
        phases,
    };
    let origin = |id: &ServiceId| {
        mapped
            .desired
            .iter()
            .find(|d| d.server.service.id == *id)
            .map_or("?", |d| d.origin.as_str())
            .to_owned()
    };
    let why_not = |id: &ServiceId| {
        out.sync
            .not_adopted
            .iter()
            .find(|(n, _)| n == id)
            .and_then(|(_, why)| why.clone())
    };
    let disowned = out.sync.disowned.iter().map(|id| Note::Disowned(*id));
    let adopted = out.sync.adopted.iter().map(|id| Note::Adopted {
        id: *id,
        origin: origin(id),
    });
    let conflicts = out.sync.plan.conflicts.iter().map(|id| match why_not(id) {
        Some(why) => Note::NotAdopted {
            id: *id,
            origin: Some(origin(id)),
            why,
        },
        None => Note::Conflict {
            id: *id,
            origin: origin(id),
        },
    });
    let unwanted = out
        .sync
        .not_adopted
        .iter()
        .filter(|(_, why)| why.is_none())
        .map(|(id, _)| Note::NotAdopted {
            id: *id,
            origin: None,
            why: String::new(),
        });
    out.notes = disowned
        .chain(adopted)
        .chain(conflicts)
        .chain(unwanted)
        .collect();
    if out.notes.iter().any(Note::fails) {
        out.code = 1;
    }
    if dry_run {
        return out;
    }
    let written = write(kernel, &out.sync, state);
    let mut at = out.phases.done("write", at);
    let (w, broken) = match written {
        Ok(w) => (w, None),
        Err((msg, w)) => (w, Some(msg)),
    };
    if broken.is_none() {
        // Adopted services are recorded now: adoption was for this sync.
        state.adopt = false;
    }
    out.sent = w.sent;
    out.failed = w.refused.len();
    if out.failed > 0 {
        out.code = 1;
    }
    out.notes.extend(w.refused);
    if let Some(msg) = broken {
        out.notes.push(Note::Broken(msg));
        out.code = 1;
        out.error = true;
        return out;
    }
    if let Some(ct) = side.conntrack {
        let flush = udp_flush(current, &out.sync.plan.ops);
        if !flush.is_empty() {
            if let Err(e) = ct.flush(&flush) {
                out.notes.push(Note::Conntrack(e.to_string()));
                out.code = 1;
            }
            at = out.phases.done("conntrack", at);
        }
    }
    let at = match side.dummy {
        Some(dummy) => {
            bind_addresses(kernel, mapped, &mut out, dummy);
            out.phases.done("addresses", at)
        }
        None => at,
    };
    if let Some(packet) = side.packet {
        if !out.error {
            write_packet_path(mapped, &mut out, packet);
            out.phases.done("nftables", at);
        }
    }
    if !out.sync.draining.is_empty() {
        out.notes.push(Note::Draining(out.sync.draining.len()));
    }
    out
}

/// The names of the firewall-mark services of `mapped` (the state file
/// keeps each Service port's mark by them).
pub fn fwmark_names(mapped: &Mapped) -> ownership::Names {
    mapped
        .desired
        .iter()
        .filter(|d| matches!(d.server.service.id, ServiceId::Fwmark { .. }))
        .map(|d| (d.server.service.id, d.origin.clone()))
        .collect()
}

/// The addresses of the virtual services of `current` not in `owned`:
/// another tool's or another instance's, whose addresses it must leave on
/// the dummy interface (issue 34: a second instance stripped the first's).
fn foreign_addresses(current: &[VirtualServer], owned: &HashSet<ServiceId>) -> BTreeSet<IpAddr> {
    current
        .iter()
        .map(|v| v.service.id)
        .filter(|id| !owned.contains(id))
        .filter_map(|id| match id {
            ServiceId::Inet { addr, .. } => Some(addr),
            ServiceId::Fwmark { .. } => None,
        })
        .collect()
}

/// Binds on `dummy` the addresses of the desired services but conflicts
/// (after a refused write, only of those the table has: a creation may
/// have failed), once their services are there: traffic to a bound
/// address with no service would be refused by the node itself.
fn bind_addresses(
    kernel: &mut impl Kernel,
    mapped: &Mapped,
    out: &mut Outcome,
    dummy: &mut dyn node::Addresses,
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
                out.notes.push(Note::Kernel(strerror::describe(&e)));
                out.code = 1;
                out.error = true;
                return;
            }
        }
    };
    match dummy.bind_keeping(&wanted, &out.foreign) {
        Ok(changes) => {
            out.bound = node::describe(&changes, dummy.name(), false);
            for e in &changes.errors {
                out.notes.push(Note::Address(e.to_string()));
                out.code = 1;
            }
        }
        Err(msg) => {
            out.notes.push(Note::Broken(msg));
            out.code = 1;
            out.error = true;
        }
    }
}

/// The UDP conntrack entries a sync's writes leave stale, as kube-proxy
/// deletes them: a UDP virtual service removed, or given real servers
/// when it had none (its entries were made while nothing answered): every
/// entry to its address and port; a UDP real server removed: every entry
/// translated to it.
pub fn udp_flush(current: &[VirtualServer], ops: &[Op]) -> node::conntrack::Flush {
    use std::net::SocketAddr;
    let udp = |id: &ServiceId| match id {
        ServiceId::Inet {
            protocol: ipvs_netlink::Protocol::Udp,
            addr,
            port,
        } => Some(SocketAddr::new(*addr, *port)),
        _ => None,
    };
    let had_dests = |id: &ServiceId| {
        current
            .iter()
            .any(|v| v.service.id == *id && !v.dests.is_empty())
    };
    let mut flush = node::conntrack::Flush::default();
    for op in ops {
        match op {
            Op::DeleteService(id) => flush.udp_service_addrs.extend(udp(id)),
            Op::AddDestination(id, _) if !had_dests(id) => flush.udp_service_addrs.extend(udp(id)),
            Op::DeleteDestination(id, addr) if udp(id).is_some() => {
                flush.udp_endpoint_addrs.push(*addr)
            }
            _ => {}
        }
    }
    flush.udp_service_addrs.sort();
    flush.udp_service_addrs.dedup();
    flush.udp_endpoint_addrs.sort();
    flush.udp_endpoint_addrs.dedup();
    flush
}

/// Writes the packet path's elements for the desired services but the
/// conflicts another tool's virtual services hold.
fn write_packet_path(mapped: &Mapped, out: &mut Outcome, packet: &mut node::nft::PacketPath) {
    let conflicts: HashSet<ServiceId> = out.sync.plan.conflicts.iter().copied().collect();
    let written = packet.write(&mapped.ports, &mapped.node_ips, |ip, proto, port| {
        let id = ServiceId::inet(
            mapping::ipvs_protocol(proto),
            std::net::SocketAddr::new(ip, port),
        );
        conflicts.contains(&id)
    });
    match written {
        Ok(w) => out.packet = Some(w),
        Err(e) => {
            out.notes.push(Note::Broken(format!(
                "the packet path (nftables table inet {}) was not written: {e}",
                crate::packet::TABLE
            )));
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
    let mut mapped = match desired_table(args, source, io) {
        Ok(m) => m,
        Err(msg) => {
            fail(io, &msg);
            return 2;
        }
    };
    for w in &mapped.warnings {
        fail(io, &format!("warning: {w}"));
    }
    for p in &mapped.problems {
        fail(io, &p.to_string());
    }
    // Every check of the node that can refuse the run, before anything
    // is written (shared with the live start).
    let mut packet = match node::preflight(args) {
        Ok(p) => {
            if let Some(warning) = &p.warning {
                fail(io, warning);
            }
            p.packet
        }
        Err(msg) => {
            fail(io, &msg);
            return 2;
        }
    };
    // Every check that can fail comes before the first thing written (the
    // state directory and lock, the dummy interface): IPVS, then the
    // interface's kind, then the state file (read whole before its lock
    // is made).
    let mut handle = match open() {
        Ok(h) => h,
        Err(message) => {
            let _ = io.err.write_all(message.as_bytes());
            return 2;
        }
    };
    // A dry run changes nothing, so it takes no lock. One instance that
    // writes per network namespace, whatever its state file.
    let _netns = if args.dry_run {
        None
    } else {
        match ownership::lock_netns(&args.state) {
            Ok(lock) => Some(lock),
            Err(msg) => {
                fail(io, &msg);
                return 2;
            }
        }
    };
    let mut state = match StateFile::open_adopting(&args.state, !args.dry_run, args.adopt) {
        Ok(s) => s,
        Err(msg) => {
            fail(io, &msg);
            return 2;
        }
    };
    for note in std::mem::take(&mut state.notes) {
        fail(io, &format!("warning: {note}"));
    }
    // The firewall marks of eTP Local ports, kept from the state file.
    let fwmark_warnings = mapped.warnings.len();
    mapping::assign_fwmarks(
        &mut mapped,
        &state.fwmarks(),
        args.packet.fwmarks,
        &args.scheduler,
    );
    for w in &mapped.warnings[fwmark_warnings..] {
        fail(io, &format!("warning: {w}"));
    }
    state.name(fwmark_names(&mapped));
    // The dummy interface before any write (created if missing). IPVS is
    // loaded now, so its sysctls exist.
    let (mut dummy, sysctls) =
        match node::prepare(&args.node, args.dry_run, args.packet.localhost_nodeports) {
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
    let mut conntrack = node::conntrack::Kernel;
    let side = NodeSide {
        dummy: dummy.as_mut().map(|d| d as &mut dyn node::Addresses),
        packet: packet.as_mut(),
        conntrack: Some(&mut conntrack),
    };
    let outcome = step(&mut handle, &mapped, &mut state, args.dry_run, side);
    print_notes(&outcome.notes, &prefix, io.err);
    if args.dry_run {
        for op in &outcome.sync.plan.ops {
            let _ = writeln!(io.out, "{}", op_line(op));
        }
    }
    let mut code = outcome.code;
    if !mapped.problems.is_empty() {
        code = code.max(1);
    }
    if sysctls.failed {
        code = code.max(1);
    }
    if args.dry_run && !outcome.error {
        let conflicts = &outcome.sync.plan.conflicts;
        let wanted = node::wanted_addresses(&mapped, |id| !conflicts.contains(id));
        let interface = args.node.interface.as_str();
        match node::dummy::plan_keeping(interface, args.node.binding, &wanted, &outcome.foreign) {
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// The writes sent.
    pub sent: usize,
    /// The writes the kernel refused ([`Note::Refused`]), in order.
    pub refused: Vec<Note>,
}

/// Carries out a planned sync: records what it owns and is about to
/// create, sends the writes (new services first; no real server to a
/// service whose creation failed), then records what it owns after them.
/// The count of writes sent and each refused one (its restore line and
/// the kernel's reason); `Err` (with those so far) when the state file
/// could not be written or a batch could not be sent.
pub fn write(
    kernel: &mut impl Kernel,
    sync: &SyncPlan,
    state: &mut StateFile,
) -> Result<Written, (String, Written)> {
    let mut done = Written::default();
    let services_written = sync.plan.ops.iter().any(|op| {
        matches!(
            op,
            Op::AddService(_) | Op::EditService(_) | Op::DeleteService(_)
        )
    });
    if !services_written && state.holds_each(&sync.settings) {
        // No service written, and the file records the settings of each
        // owned: nothing to record before or after (and no records
        // copied), whatever becomes of the real servers' writes.
        if sync.plan.ops.is_empty() {
            return Ok(done);
        }
        return write_batches(kernel, sync, None, done);
    }
    // Record first: a crash after this cannot orphan what is created next.
    // (Compared in place first: a sync that changes nothing writes
    // nothing. Either way the file then records exactly these.)
    let owned = sync.before_writes();
    if !state.holds(&owned) {
        if let Err(msg) = state.record(owned) {
            return Err((format!("{msg}; nothing written"), done));
        }
    }
    if sync.plan.ops.is_empty() {
        return Ok(done);
    }
    let mut after = Vec::new();
    done = write_batches(kernel, sync, Some(&mut after), done)?;
    if after.is_empty() {
        // Every creation and no deletion or edit: what was recorded
        // before is what is owned (the usual Service added, with no copy
        // of the records of every other).
        return Ok(done);
    }
    let mut owned = state.recorded.clone();
    for (id, recorded) in after {
        match recorded {
            Some(r) => owned.insert(id, r),
            None => owned.remove(&id),
        };
    }
    match state.record(owned) {
        Ok(()) => Ok(done),
        Err(msg) => Err((msg, done)),
    }
}

/// What the writes change of the records written before them, in order:
/// a service's records replaced, or (`None`) removed.
type RecordChanges = Vec<(ServiceId, Option<Recorded>)>;

/// The writes of `sync`, new services first: with `changes`, what the
/// writes change of the records written before them (a service deleted
/// or edited, one whose creation was refused), appended in order.
fn write_batches(
    kernel: &mut impl Kernel,
    sync: &SyncPlan,
    mut changes: Option<&mut RecordChanges>,
    mut done: Written,
) -> Result<Written, (String, Written)> {
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
        let results = match kernel.apply(&batch) {
            Ok(results) => results,
            Err(e) => {
                let msg = format!("{e}; the table may be partly changed: run the sync again");
                return Err((msg, done));
            }
        };
        done.sent += batch.len();
        for (op, result) in batch.iter().zip(results) {
            match (op, result) {
                (_, Err(e)) => {
                    done.refused.push(Note::Refused {
                        line: op_line(op),
                        reason: strerror::describe(&e),
                    });
                    match op {
                        Op::AddService(s) => {
                            failed_adds.insert(s.id);
                        }
                        // Not edited: the settings it had are still ours.
                        Op::EditService(s) => {
                            if let (Some(had), Some(changes)) =
                                (sync.settings.get(&s.id), changes.as_deref_mut())
                            {
                                changes.push((s.id, Some(Recorded::one(had.clone()))));
                            }
                        }
                        _ => {}
                    }
                }
                (Op::DeleteService(id), Ok(())) => {
                    if let Some(changes) = changes.as_deref_mut() {
                        changes.push((*id, None));
                    }
                }
                // Edited: only the new settings are ours now.
                (Op::EditService(s), Ok(())) => {
                    if let Some(changes) = changes.as_deref_mut() {
                        changes.push((s.id, Some(Recorded::one(settings(s)))));
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(changes) = changes {
        changes.extend(failed_adds.into_iter().map(|id| (id, None)));
    }
    Ok(done)
}

#[cfg(test)]
pub(crate) mod tests {
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

    /// Records of services created with `rr` and nothing else, as
    /// [`vs`] gives them.
    fn rr(ids: impl IntoIterator<Item = ServiceId>) -> Records {
        ids.into_iter()
            .map(|id| (id, Recorded::one(settings(&Service::new(id, "rr")))))
            .collect()
    }

    /// The kernel's table in memory: the services as they were added,
    /// listed with the flag the kernel adds. A write it cannot make is a
    /// bug of the plan: the test fails.
    #[derive(Default)]
    pub(crate) struct Mem(pub(crate) Vec<VirtualServer>);

    impl Mem {
        fn get(&mut self, id: &ServiceId) -> &mut VirtualServer {
            let found = self.0.iter_mut().find(|v| v.service.id == *id);
            found.unwrap_or_else(|| panic!("{id}: no such service"))
        }

        fn one(&mut self, op: &Op) {
            match op {
                Op::AddService(s) => {
                    assert!(self.0.iter().all(|v| v.service.id != s.id), "{}", s.id);
                    self.0.push(VirtualServer {
                        service: s.clone(),
                        dests: Vec::new(),
                    });
                }
                Op::EditService(s) => self.get(&s.id).service = s.clone(),
                Op::DeleteService(id) => {
                    self.get(id);
                    self.0.retain(|v| v.service.id != *id);
                }
                Op::AddDestination(id, d) => self.get(id).dests.push(d.clone()),
                Op::EditDestination(id, d) => {
                    let v = self.get(id);
                    v.dests.retain(|x| x.socket_addr() != d.socket_addr());
                    v.dests.push(d.clone());
                }
                Op::DeleteDestination(id, a) => {
                    self.get(id).dests.retain(|x| x.socket_addr() != *a)
                }
                other => panic!("unexpected {other:?}"),
            }
        }

        /// Another tool's hand: `ipvsadm -D` then `-A` and `-a`.
        fn recreate(&mut self, with: VirtualServer) {
            self.0.retain(|v| v.service.id != with.service.id);
            self.0.push(with);
        }

        fn has(&mut self, id: &ServiceId) -> VirtualServer {
            self.get(id).clone()
        }
    }

    impl Kernel for Mem {
        fn table(&mut self) -> Result<Vec<VirtualServer>, ipvs_netlink::Error> {
            Ok(self.0.iter().cloned().map(listed).collect())
        }

        fn apply(
            &mut self,
            ops: &[Op],
        ) -> Result<Vec<ipvs_netlink::Result<()>>, ipvs_netlink::Error> {
            Ok(self.answer(ops, |_| false))
        }
    }

    impl Mem {
        /// The answers to `ops`: each made, but those `refused` picks,
        /// refused as the kernel refuses a service that exists (EEXIST).
        fn answer(
            &mut self,
            ops: &[Op],
            refused: impl Fn(&Op) -> bool,
        ) -> Vec<ipvs_netlink::Result<()>> {
            ops.iter()
                .map(|op| {
                    if refused(op) {
                        return Err(ipvs_netlink::Error::Kernel {
                            op: op.operation(),
                            errno: libc::EEXIST,
                        });
                    }
                    self.one(op);
                    Ok(())
                })
                .collect()
        }
    }

    /// Service `i` of the measuring tests' cluster: `bench/svc-{i}`, one
    /// port 80, a ClusterIP of its own.
    pub(crate) fn bench_service(i: usize) -> std::sync::Arc<k8s_openapi::api::core::v1::Service> {
        std::sync::Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
                "spec": {"clusterIP": format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256),
                         "ports": [{"name": "http", "port": 80}]}
            }))
            .unwrap(),
        )
    }

    /// The EndpointSlice of [`bench_service`] `i`: 4 endpoints, whose
    /// addresses differ from generation `g` to the next.
    pub(crate) fn bench_slice(
        i: usize,
        g: usize,
    ) -> std::sync::Arc<k8s_openapi::api::discovery::v1::EndpointSlice> {
        let eps: Vec<_> = (1..=4)
            .map(|k| serde_json::json!({"addresses": [format!("172.{}.{}.{k}", 16 + g % 8, i % 250)]}))
            .collect();
        std::sync::Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("svc-{i}-abcde"), "namespace": "bench",
                             "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}], "endpoints": eps
            }))
            .unwrap(),
        )
    }

    static DIRS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// A state file in a fresh directory of its own.
    pub(crate) fn state_file() -> (StateFile, std::path::PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let n = DIRS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("ipvsadm-rs-sync-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        (StateFile::open(&dir.join("owned"), true).unwrap(), dir)
    }

    /// One sync of `desired`: plan over the kernel's table, record, write.
    fn sync(kernel: &mut Mem, desired: &[VirtualServer], state: &mut StateFile) -> SyncPlan {
        let current = kernel.table().unwrap();
        let s = plan_sync(desired, &current, &state.recorded).unwrap();
        let done = write(kernel, &s, state).unwrap();
        assert_eq!(done.refused, []);
        s
    }

    fn with_scheduler(mut v: VirtualServer, scheduler: &str) -> VirtualServer {
        v.service.scheduler = scheduler.to_owned();
        v
    }

    /// The mapped table of `desired`, each from Service `default/sN:80`.
    fn mapped_of(desired: &[VirtualServer]) -> Mapped {
        Mapped {
            desired: desired
                .iter()
                .enumerate()
                .map(|(n, v)| mapping::Desired {
                    server: v.clone(),
                    origin: format!("default/s{n}:80"),
                    bound: true,
                })
                .collect(),
            ..Mapped::default()
        }
    }

    /// `--adopt` on a table another proxy left: what has exactly the
    /// settings the mapping writes becomes ours (its real servers synced,
    /// nothing recreated), what differs or is wanted by no Service is
    /// left alone and reported; adoption is for the first sync only.
    #[test]
    fn adopt_takes_exactly_what_the_mapping_writes_and_reports_the_rest() {
        let mut theirs = Mem(vec![
            vs("10.96.0.1:80", &["10.1.0.1:80"]),
            vs("10.96.0.2:80", &["10.1.0.2:80", "10.1.0.9:80"]),
            with_scheduler(vs("10.96.0.3:80", &["10.1.0.3:80"]), "wlc"),
            with_scheduler(vs("10.200.0.1:80", &["10.9.9.9:80"]), "wlc"),
        ]);
        let before = theirs.0.clone();
        let desired = vec![
            vs("10.96.0.1:80", &["10.1.0.1:80", "10.1.0.11:80"]),
            vs("10.96.0.2:80", &["10.1.0.2:80"]),
            vs("10.96.0.3:80", &["10.1.0.3:80"]),
            vs("10.96.0.5:80", &["10.1.0.5:80"]),
        ];
        let mapped = mapped_of(&desired);

        // Without the flag: nothing of theirs is touched.
        let (mut state, dir) = state_file();
        let mut kernel = Mem(before.clone());
        let out = step(&mut kernel, &mapped, &mut state, false, NodeSide::default());
        let notes: Vec<String> = out.notes.iter().map(|n| n.to_string()).collect();
        assert_eq!(out.code, 1);
        assert_eq!(
            notes,
            [
                "TCP 10.96.0.1:80 (default/s0:80) is held by a virtual service ipvsadm-rs did not create: left alone",
                "TCP 10.96.0.2:80 (default/s1:80) is held by a virtual service ipvsadm-rs did not create: left alone",
                "TCP 10.96.0.3:80 (default/s2:80) is held by a virtual service ipvsadm-rs did not create: left alone",
            ]
        );
        assert_eq!(state.ids(), [id("10.96.0.5:80")].into());
        assert_eq!(kernel.0[..4], before[..]);
        drop(state);
        std::fs::remove_dir_all(dir).unwrap();

        // With it.
        let (mut state, dir) = state_file();
        state.adopt = true;
        let out = step(&mut theirs, &mapped, &mut state, false, NodeSide::default());
        let notes: Vec<String> = out.notes.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            notes,
            [
                "TCP 10.96.0.1:80 (default/s0:80) adopted: it has exactly the settings the mapping writes; now ipvsadm-rs's (recorded, its real servers synced to the endpoints)",
                "TCP 10.96.0.2:80 (default/s1:80) adopted: it has exactly the settings the mapping writes; now ipvsadm-rs's (recorded, its real servers synced to the endpoints)",
                "TCP 10.96.0.3:80 (default/s2:80) is held by a virtual service ipvsadm-rs did not create: left alone, not adopted: scheduler wlc, the mapping writes rr",
                "TCP 10.200.0.1:80 is a virtual service ipvsadm-rs did not create and no Service wants: left alone, not adopted",
            ]
        );
        assert_eq!(out.code, 1, "the one that differs is a conflict");
        assert_eq!(out.sync.adopted, [id("10.96.0.1:80"), id("10.96.0.2:80")]);
        // Adopted: real servers synced, no service removed or recreated.
        let dest = |a: &str| Destination::new(a.parse().unwrap());
        assert_eq!(
            out.sync.plan.ops,
            [
                Op::AddDestination(id("10.96.0.1:80"), dest("10.1.0.11:80")),
                Op::DeleteDestination(id("10.96.0.2:80"), "10.1.0.9:80".parse().unwrap()),
                Op::AddService(desired[3].service.clone()),
                Op::AddDestination(id("10.96.0.5:80"), dest("10.1.0.5:80")),
            ]
        );
        assert_eq!(theirs.has(&id("10.96.0.3:80")), before[2]);
        assert_eq!(theirs.has(&id("10.200.0.1:80")), before[3]);
        assert_eq!(
            state.ids(),
            ["10.96.0.1:80", "10.96.0.2:80", "10.96.0.5:80"]
                .map(id)
                .into()
        );
        assert!(!state.adopt, "adoption is for the first sync");
        // The next sync: ours as any other; the rest still left alone. A
        // service another tool now creates with our settings is a
        // conflict, no longer adopted.
        theirs.0.push(vs("10.96.0.6:80", &[]));
        let mut more = desired.clone();
        more.push(vs("10.96.0.6:80", &["10.1.0.6:80"]));
        let again = step(
            &mut theirs,
            &mapped_of(&more),
            &mut state,
            false,
            NodeSide::default(),
        );
        assert!(again.sync.plan.ops.is_empty(), "{:?}", again.sync.plan.ops);
        assert_eq!(
            again.sync.plan.conflicts,
            [id("10.96.0.3:80"), id("10.96.0.6:80")]
        );
        assert!(again.sync.adopted.is_empty());
        // A Service gone: its adopted service is deleted as ours.
        let gone = step(
            &mut theirs,
            &mapped_of(&desired[1..]),
            &mut state,
            false,
            NodeSide::default(),
        );
        assert!(gone
            .sync
            .plan
            .ops
            .contains(&Op::DeleteService(id("10.96.0.1:80"))));
        drop(state);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A record whose service now has other settings is disowned, unless
    /// `--adopt` finds it exactly what the mapping writes.
    #[test]
    fn adopt_takes_back_a_recorded_service_that_matches_the_mapping() {
        let have = vec![listed(vs("10.96.0.1:80", &["10.1.0.1:80"]))];
        let desired = vec![vs("10.96.0.1:80", &["10.1.0.1:80"])];
        let mut sticky = Service::new(id("10.96.0.1:80"), "rr").persistent(10800);
        sticky.flags |= ServiceFlags::HASHED;
        let recorded: Records = [(id("10.96.0.1:80"), Recorded::one(settings(&sticky)))].into();
        let plain = plan_sync(&desired, &have, &recorded).unwrap();
        assert_eq!(plain.disowned, [id("10.96.0.1:80")]);
        let adopting = plan_sync_adopting(&desired, &have, &recorded, true).unwrap();
        assert!(adopting.disowned.is_empty());
        assert_eq!(adopting.adopted, [id("10.96.0.1:80")]);
        assert!(adopting.plan.ops.is_empty() && adopting.plan.conflicts.is_empty());
    }

    #[test]
    fn a_service_another_tool_recreated_at_our_address_is_never_changed_nor_deleted() {
        let (mut state, dir) = state_file();
        let mut kernel = Mem::default();
        let desired = vec![
            vs("10.0.0.1:80", &["10.1.0.1:80"]),
            vs("10.0.0.2:80", &["10.1.0.2:80"]),
        ];
        let first = sync(&mut kernel, &desired, &mut state);
        assert_eq!(first.plan.ops.len(), 4);
        assert_eq!(state.ids(), ["10.0.0.1:80", "10.0.0.2:80"].map(id).into());
        // The operator deletes ours and creates theirs: wlc, their server.
        let theirs = with_scheduler(vs("10.0.0.1:80", &["10.9.9.9:80"]), "wlc");
        kernel.recreate(theirs.clone());
        let second = sync(&mut kernel, &desired, &mut state);
        assert_eq!(second.disowned, vec![id("10.0.0.1:80")]);
        assert_eq!(second.plan.conflicts, vec![id("10.0.0.1:80")]);
        assert!(second.plan.ops.is_empty(), "{:?}", second.plan.ops);
        assert_eq!(kernel.has(&id("10.0.0.1:80")), theirs);
        assert_eq!(state.ids(), [id("10.0.0.2:80")].into());
        // The Services go: ours is deleted, theirs stays.
        let third = sync(&mut kernel, &[], &mut state);
        assert_eq!(third.plan.ops, vec![Op::DeleteService(id("10.0.0.2:80"))]);
        assert_eq!(kernel.0, vec![theirs]);
        assert!(state.recorded.is_empty());
        drop(state);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// [`Mem`], but the writes of `refuse` are refused as the kernel
    /// refuses a service that exists (EEXIST).
    struct Refusing {
        mem: Mem,
        refuse: Vec<Op>,
    }

    impl Kernel for Refusing {
        fn table(&mut self) -> Result<Vec<VirtualServer>, ipvs_netlink::Error> {
            self.mem.table()
        }

        fn apply(
            &mut self,
            ops: &[Op],
        ) -> Result<Vec<ipvs_netlink::Result<()>>, ipvs_netlink::Error> {
            Ok(self.mem.answer(ops, |op| self.refuse.contains(op)))
        }
    }

    /// What the state file on disk records after writes the kernel takes
    /// or refuses: a deleted service's record gone, a created one's kept,
    /// a refused creation never recorded, a refused edit's service still
    /// recorded with the settings it kept, an edit done with its new
    /// settings alone (the rules of `ownership`'s documentation).
    #[test]
    fn the_state_file_after_the_writes_is_what_the_kernel_took() {
        let (mut state, dir) = state_file();
        let path = dir.join("owned");
        let on_disk = || StateFile::open(&path, false).unwrap().recorded;
        let mut kernel = Refusing {
            mem: Mem::default(),
            refuse: Vec::new(),
        };
        let (a, b, c, d) = (
            vs("10.0.0.1:80", &["10.1.0.1:80"]),
            vs("10.0.0.2:80", &["10.1.0.2:80"]),
            vs("10.0.0.3:80", &["10.1.0.3:80"]),
            vs("10.0.0.4:80", &["10.1.0.4:80"]),
        );
        let mut run = |kernel: &mut Refusing, desired: &[VirtualServer]| {
            let current = kernel.table().unwrap();
            let s = plan_sync(desired, &current, &state.recorded).unwrap();
            let done = write(kernel, &s, &mut state).unwrap();
            (done.refused.len(), state.recorded.clone())
        };
        let (refused, _) = run(&mut kernel, &[a.clone(), b.clone()]);
        assert_eq!(refused, 0);
        let rr = |v: &VirtualServer| Recorded::one(settings(&v.service));
        assert_eq!(
            on_disk(),
            [(id("10.0.0.1:80"), rr(&a)), (id("10.0.0.2:80"), rr(&b))].into()
        );

        // a's edit and d's creation refused, b deleted, c created.
        let a_wlc = with_scheduler(a.clone(), "wlc");
        kernel.refuse = vec![
            Op::EditService(a_wlc.service.clone()),
            Op::AddService(d.service.clone()),
        ];
        let (refused, recorded) = run(&mut kernel, &[a_wlc.clone(), c.clone(), d.clone()]);
        assert_eq!(refused, 2);
        let want: Records = [(id("10.0.0.1:80"), rr(&a)), (id("10.0.0.3:80"), rr(&c))].into();
        assert_eq!(on_disk(), want);
        assert_eq!(recorded, want);
        assert_eq!(kernel.mem.has(&id("10.0.0.1:80")).service.scheduler, "rr");

        // The edit taken: its new settings alone.
        kernel.refuse.clear();
        let (refused, _) = run(&mut kernel, &[a_wlc.clone(), c.clone()]);
        assert_eq!(refused, 0);
        assert_eq!(
            on_disk(),
            [(id("10.0.0.1:80"), rr(&a_wlc)), (id("10.0.0.3:80"), rr(&c))].into()
        );
        drop(state);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn drift_in_real_servers_is_repaired_and_our_own_edits_stay_ours() {
        let (mut state, dir) = state_file();
        let mut kernel = Mem::default();
        let a = id("10.0.0.1:80");
        let mut desired = vec![vs("10.0.0.1:80", &["10.1.0.1:80", "10.1.0.2:80"])];
        sync(&mut kernel, &desired, &mut state);
        // By hand: one of our real servers deleted, a stranger added.
        kernel.one(&Op::DeleteDestination(a, "10.1.0.2:80".parse().unwrap()));
        kernel.one(&Op::AddDestination(
            a,
            Destination::new("10.9.9.9:80".parse().unwrap()),
        ));
        let repaired = sync(&mut kernel, &desired, &mut state);
        assert!(repaired.disowned.is_empty());
        assert_eq!(repaired.plan.ops.len(), 2, "{:?}", repaired.plan.ops);
        let mut dests = kernel.has(&a).dests;
        dests.sort_by_key(|d| d.socket_addr());
        assert_eq!(dests, desired[0].dests);
        // The Service gains affinity: an edit of ours. Before it both
        // settings are recorded (a crash in between keeps it ours)...
        desired[0].service = desired[0].service.clone().persistent(10800);
        let current = kernel.table().unwrap();
        let edit = plan_sync(&desired, &current, &state.recorded).unwrap();
        assert_eq!(
            edit.plan.ops,
            vec![Op::EditService(desired[0].service.clone())]
        );
        let Recorded::Settings(both) = &edit.before_writes()[&a] else {
            panic!("no settings recorded");
        };
        assert_eq!(both.len(), 2);
        state.record(edit.before_writes()).unwrap();
        let after_crash = plan_sync(&desired, &current, &state.recorded).unwrap();
        assert_eq!(after_crash.owned, [a].into());
        // ...and after it only the new ones; the next sync has nothing to do.
        sync(&mut kernel, &desired, &mut state);
        assert_eq!(
            state.recorded[&a],
            Recorded::one(settings(&desired[0].service))
        );
        let quiet = sync(&mut kernel, &desired, &mut state);
        assert!(quiet.plan.ops.is_empty() && quiet.disowned.is_empty());
        drop(state);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_record_of_a_service_never_created_gives_no_ownership() {
        let theirs = listed(with_scheduler(vs("10.0.0.7:80", &["10.9.9.9:80"]), "sh"));
        let matching = listed(vs("10.0.0.8:80", &["10.1.0.8:80"]));
        let current = vec![theirs.clone(), matching.clone()];
        let desired = vec![
            vs("10.0.0.7:80", &["10.1.0.7:80"]),
            vs("10.0.0.8:80", &["10.1.0.8:80"]),
        ];
        // Forged with our usual settings (format 2).
        let s = plan_sync(&desired, &current, &rr([id("10.0.0.7:80")])).unwrap();
        assert_eq!(s.disowned, vec![id("10.0.0.7:80")]);
        assert!(s.plan.ops.is_empty());
        let gone = plan_sync(&[], &current, &rr([id("10.0.0.7:80")])).unwrap();
        assert!(gone.plan.ops.is_empty(), "{:?}", gone.plan.ops);
        // Format 1: ours only with the settings the dump asks for; the
        // first sync then records them.
        let old: Records = ["10.0.0.7:80", "10.0.0.8:80"]
            .map(|a| (id(a), Recorded::Unknown))
            .into();
        let s = plan_sync(&desired, &current, &old).unwrap();
        assert_eq!(s.disowned, vec![id("10.0.0.7:80")]);
        assert_eq!(s.owned, [id("10.0.0.8:80")].into());
        assert_eq!(s.before_writes(), rr([id("10.0.0.8:80")]));
        let gone = plan_sync(&[], &current, &old).unwrap();
        assert!(gone.plan.ops.is_empty(), "{:?}", gone.plan.ops);
    }

    /// A reader of endless bytes, as `/dev/zero` is.
    struct Endless;

    impl std::io::Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            buf.fill(0);
            Ok(buf.len())
        }
    }

    #[test]
    fn an_endless_dump_is_refused_at_the_bound() {
        let mut input = std::io::BufReader::new(Endless);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = Io {
            input: &mut input,
            out: &mut out,
            err: &mut err,
        };
        assert_eq!(
            read_source("-", &mut io, 1 << 20).unwrap_err(),
            "the dump is longer than 1048576 bytes (the bound is set by IPVSADM_RS_MAX_INPUT)"
        );
        let mut dump: &[u8] = b"{}";
        io.input = &mut dump;
        assert_eq!(read_source("-", &mut io, 2).unwrap(), "{}");
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
        let recorded = rr(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.4:80"].map(id));
        let desired = vec![
            vs("10.0.0.1:80", &["10.1.0.1:80", "10.1.0.2:80"]),
            vs("10.0.0.3:80", &["10.1.0.3:80"]),
            vs("10.0.0.5:80", &["10.1.0.5:80"]),
        ];
        let s = plan_sync(&desired, &current, &recorded).unwrap();
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
            rr(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.5:80"].map(id))
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
        let recorded = rr([id("10.0.0.1:80")]);
        let s = plan_sync(&desired, std::slice::from_ref(&have), &recorded).unwrap();
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
        let s = plan_sync(&desired, std::slice::from_ref(&have), &recorded).unwrap();
        assert!(s.plan.ops.is_empty());
        assert_eq!(s.draining.len(), 1);
        // Idle: deleted. A foreign service's real servers are never touched.
        have.dests[1] = drained;
        let s = plan_sync(&desired, std::slice::from_ref(&have), &recorded).unwrap();
        assert_eq!(
            s.plan.ops,
            vec![Op::DeleteDestination(id("10.0.0.1:80"), busy.socket_addr())]
        );
        assert!(s.draining.is_empty());
        let s = plan_sync(&desired, &[have], &Records::new()).unwrap();
        assert!(s.plan.ops.is_empty() && s.draining.is_empty());
    }

    #[test]
    fn a_table_that_matches_needs_no_write_and_no_new_record() {
        let desired = vec![vs("10.0.0.1:80", &["10.1.0.1:80"])];
        let current: Vec<_> = desired.iter().cloned().map(listed).collect();
        let recorded = rr([id("10.0.0.1:80")]);
        let s = plan_sync(&desired, &current, &recorded).unwrap();
        assert!(s.plan.ops.is_empty());
        assert_eq!(s.before_writes(), recorded);
    }

    /// One step writes all three: IPVS, the addresses and the packet
    /// path, each from the same model; the address another tool's
    /// virtual service holds is in none of ours; a second step that
    /// changes nothing sends nothing anywhere; a refused transaction is
    /// a broken sync, and the next write is the whole table again.
    #[test]
    fn one_step_writes_ipvs_the_addresses_and_the_packet_path_from_one_model() {
        let dump = r#"{"kind":"List","items":[
          {"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"shop"},
           "spec":{"clusterIP":"10.96.0.10","type":"NodePort","ports":[{"port":80,"nodePort":30080}]}},
          {"apiVersion":"v1","kind":"Service","metadata":{"name":"taken","namespace":"shop"},
           "spec":{"clusterIP":"10.96.0.20","ports":[{"port":80}]}},
          {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
           "metadata":{"name":"web-1","namespace":"shop","labels":{"kubernetes.io/service-name":"web"}},
           "addressType":"IPv4","ports":[{"port":8080}],"endpoints":[{"addresses":["10.244.1.5"]}]}]}"#;
        let node = Node {
            ips: vec!["192.168.50.2".parse().unwrap()],
            name: Some("node-a".into()),
            zone: None,
            scheduler: "rr".into(),
        };
        let mapped = mapping::map(&mapping::read_objects(dump).unwrap(), &node);
        // Another tool holds 10.96.0.20:80.
        let mut kernel = Mem(vec![vs("10.96.0.20:80", &["10.1.1.1:80"])]);
        let (mut state, dir) = state_file();
        let mut addrs = node::FakeAddresses::default();
        let nft = node::nft::FakeNft::default();
        let mut packet =
            node::nft::PacketPath::new(Box::new(nft.clone()), crate::packet::Options::default());
        let side = NodeSide {
            dummy: Some(&mut addrs),
            packet: Some(&mut packet),
            conntrack: None,
        };
        let out = step(&mut kernel, &mapped, &mut state, false, side);
        assert_eq!(out.code, 1, "the conflict: {:?}", out.notes);
        assert!(!out.error, "{:?}", out.notes);
        let bound: Vec<String> = addrs.held.iter().map(|a| a.to_string()).collect();
        assert_eq!(bound, ["10.96.0.10"]);
        let w = out.packet.expect("a packet-path write");
        assert!(w.full && w.sent, "{w:?}");
        let tx = nft.transactions.lock().unwrap().clone();
        assert_eq!(tx.len(), 1);
        assert!(
            tx[0].contains("10.96.0.10 . tcp . 80 : goto cluster-ip"),
            "{}",
            tx[0]
        );
        assert!(
            tx[0].contains("192.168.50.2 . tcp . 30080 : goto external"),
            "{}",
            tx[0]
        );
        assert!(
            !tx[0].contains("10.96.0.20"),
            "the other tool's address: {}",
            tx[0]
        );

        // Nothing changed: nothing sent to IPVS, the addresses or nftables.
        let side = NodeSide {
            dummy: Some(&mut addrs),
            packet: Some(&mut packet),
            conntrack: None,
        };
        let again = step(&mut kernel, &mapped, &mut state, false, side);
        assert_eq!(again.sent, 0);
        assert!(again.bound.is_empty(), "{:?}", again.bound);
        assert_eq!(again.packet.map(|w| w.sent), Some(false));
        assert_eq!(nft.transactions.lock().unwrap().len(), 1);

        // nft refuses: the sync is broken; once it takes them again, the
        // whole table is written.
        nft.refuse.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut fewer = mapped.clone();
        for p in fewer.ports.iter_mut().filter(|p| p.name == "web") {
            p.endpoints.clear();
        }
        let side = NodeSide {
            dummy: Some(&mut addrs),
            packet: Some(&mut packet),
            conntrack: None,
        };
        let broken = step(&mut kernel, &fewer, &mut state, false, side);
        assert!(broken.error && broken.code == 1, "{broken:?}");
        assert!(broken
            .notes
            .iter()
            .any(|n| n.to_string().contains("packet path")));
        nft.refuse.store(false, std::sync::atomic::Ordering::SeqCst);
        let side = NodeSide {
            dummy: Some(&mut addrs),
            packet: Some(&mut packet),
            conntrack: None,
        };
        let healed = step(&mut kernel, &fewer, &mut state, false, side);
        assert_eq!(healed.packet.map(|w| w.full), Some(true));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The UDP entries a sync leaves stale, read off its writes as
    /// kube-proxy's conntrack cleanup reads them off its changes.
    #[test]
    fn stale_udp_entries_are_those_of_removed_services_endpoints_and_first_endpoints() {
        let udp = |a: &str| ServiceId::inet(ipvs_netlink::Protocol::Udp, a.parse().unwrap());
        let dest = |a: &str| Destination::new(a.parse().unwrap());
        let mut had = vs("10.96.0.1:53", &["10.244.1.1:53"]);
        had.service.id = udp("10.96.0.53:53");
        let mut empty = vs("10.96.0.2:53", &[]);
        empty.service.id = udp("10.96.0.54:53");
        let current = [had, empty];
        let ops = [
            Op::DeleteService(udp("10.96.0.9:53")),
            Op::DeleteService(id("10.96.0.10:80")),
            Op::DeleteDestination(udp("10.96.0.53:53"), "10.244.1.1:53".parse().unwrap()),
            Op::DeleteDestination(id("10.96.0.11:80"), "10.244.1.2:80".parse().unwrap()),
            Op::AddDestination(udp("10.96.0.53:53"), dest("10.244.1.3:53")),
            Op::AddDestination(udp("10.96.0.54:53"), dest("10.244.1.4:53")),
        ];
        let f = udp_flush(&current, &ops);
        let s = |v: &[std::net::SocketAddr]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        // Gone (UDP only), and the service that had no real server.
        assert_eq!(s(&f.udp_service_addrs), ["10.96.0.9:53", "10.96.0.54:53"]);
        assert_eq!(s(&f.udp_endpoint_addrs), ["10.244.1.1:53"]);
    }

    mod resync;
    mod scoped;
}
