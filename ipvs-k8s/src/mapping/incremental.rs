//! The mapping of the live loop, one Service at a time: each Service's
//! part of the [`Mapped`] table is kept with the objects it came from
//! (the watch cache's shared objects, compared by identity: the cache
//! hands out a new object for every change it is told of), and only the
//! Services whose object or EndpointSlices changed are mapped anew. A
//! change of the node (its addresses, name, zone or default scheduler,
//! which every Service's part depends on) maps everything anew.
//!
//! What changed is found with one lookup of each object's address; the
//! table the caller hands back is patched: each unchanged Service's part
//! is moved over as it is, and the parts of the Services mapped anew, or
//! wanting a virtual service whose first-come owner may have changed (an
//! index keeps, for each virtual service, the Services that want it in
//! the table's order), are put together anew.
//!
//! The result is what [`map_refs`](super::map_refs) gives for the same
//! objects (the tests check it on random sequences of changes), with
//! [`Changes`]: which virtual services can differ from the last map's,
//! so that the sync plans only those.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use ipvs_netlink::ServiceId;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;

use super::{
    has_label, labels, port_servers, service_model, Desired, Mapped, Node, ServiceModel, HEADLESS,
    SERVICE_NAME, SERVICE_PROXY_NAME,
};

/// A Service's namespace and name: the order of the table.
type Key = (String, String);

/// How many items of each of the table's lists one Service's part holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Held {
    desired: usize,
    warnings: usize,
    conflicts: usize,
    problems: usize,
    ports: usize,
}

impl Held {
    fn add(&mut self, other: Held) {
        self.desired += other.desired;
        self.warnings += other.warnings;
        self.conflicts += other.conflicts;
        self.problems += other.problems;
        self.ports += other.ports;
    }
}

/// One Service's part of the table, with what it was mapped from.
#[derive(Debug)]
struct Entry {
    service: Arc<core::Service>,
    /// Its EndpointSlices, in name order.
    slices: Vec<Arc<discovery::EndpointSlice>>,
    model: ServiceModel,
    /// The virtual services of its ports, in order, before the ones
    /// another Service took first are left out.
    servers: Vec<Desired>,
    /// Which of `servers` the table has: those of which it is the first
    /// Service that wants the virtual service (and, of its own ports,
    /// the first that does).
    kept: Vec<bool>,
    /// The warnings of the virtual services of `servers` a Service
    /// before it, or a port of its own before, took first.
    conflicts: Vec<String>,
    /// What of it the last table put together holds (nothing for a
    /// Service added since).
    held: Held,
    /// Its part must be put together anew: it was mapped anew, is gone,
    /// or a virtual service it wants may have changed hands.
    dirty: bool,
    /// It is gone since the last map (its part leaves the table).
    gone: bool,
}

impl Entry {
    /// What of it the table holds now.
    fn holds(&self) -> Held {
        if self.gone {
            return Held::default();
        }
        let (problems, ports) = match &self.model.ports {
            Some(Ok(ports)) => (0, ports.len()),
            Some(Err(_)) => (1, 0),
            None => (0, 0),
        };
        Held {
            desired: self.kept.iter().filter(|k| **k).count(),
            warnings: self.model.warnings.len(),
            conflicts: self.conflicts.len(),
            problems,
            ports,
        }
    }
}

/// What changed since the last [`Incremental::map`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Everything was mapped anew: the first map, or the node changed.
    pub all: bool,
    /// The Services mapped anew (added, changed or removed).
    pub services: usize,
    /// The virtual services those Services had or have now: without
    /// `all`, every other virtual service of the result is as the last
    /// map had it (present or not, and with the same settings, real
    /// servers and origin).
    pub ids: HashSet<ServiceId>,
}

/// The mapping of the live loop, which keeps each Service's part (see the
/// module's documentation).
#[derive(Debug, Default)]
pub struct Incremental {
    node: Option<Node>,
    /// By namespace, then name: in the table's order.
    entries: BTreeMap<String, BTreeMap<String, Entry>>,
    /// By virtual service, the Services that want it, in the table's
    /// order (the first has it).
    wanters: HashMap<ServiceId, Wanters>,
    /// The Service objects of the last map, by address (held, so that
    /// identity holds: no new object can take the address of one of
    /// these).
    services: HashMap<usize, Arc<core::Service>>,
    /// The EndpointSlice objects of the last map, by address, with the
    /// Service each belongs to (`None`: to none the mapping serves).
    slices: HashMap<usize, (Arc<discovery::EndpointSlice>, Option<Key>)>,
    /// Each Service's EndpointSlices (in no order).
    slices_of: HashMap<Key, Vec<Arc<discovery::EndpointSlice>>>,
    /// What the last table put together holds, in all (`None`: none
    /// was put together since the node changed).
    shape: Option<Held>,
}

/// The address of a shared object: its identity.
fn address<T>(object: &Arc<T>) -> usize {
    Arc::as_ptr(object) as usize
}

fn namespace(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

fn name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

/// A Service's key.
fn key_of(svc: &core::Service) -> Key {
    (
        namespace(&svc.metadata).to_owned(),
        name(&svc.metadata).to_owned(),
    )
}

/// The Service an EndpointSlice belongs to, if the mapping reads it (not
/// another proxy's, nor a headless Service's).
fn owner_of(slice: &discovery::EndpointSlice) -> Option<Key> {
    let meta = &slice.metadata;
    if has_label(meta, SERVICE_PROXY_NAME) || has_label(meta, HEADLESS) {
        return None;
    }
    let owner = labels(meta).and_then(|l| l.get(SERVICE_NAME))?;
    Some((namespace(meta).to_owned(), owner.clone()))
}

/// The objects of `now` whose addresses `known` does not have, and the
/// addresses of `known` that `now` does not have: one lookup per object
/// (and, when some are gone, one more per known object).
fn compare<T, V>(now: &[Arc<T>], known: &HashMap<usize, V>) -> (Vec<Arc<T>>, Vec<usize>) {
    let mut found = 0;
    let mut added = Vec::new();
    for object in now {
        if known.contains_key(&address(object)) {
            found += 1;
        } else {
            added.push(Arc::clone(object));
        }
    }
    let mut gone = Vec::new();
    if found < known.len() {
        let present: HashSet<usize> = now.iter().map(address).collect();
        gone.extend(known.keys().filter(|a| !present.contains(a)).copied());
    }
    (added, gone)
}

/// The Services that want one virtual service, in the table's order
/// (the first has it): almost always one, so a sorted `Vec` (a
/// `BTreeSet` of one key takes a whole node, some 500 bytes).
type Wanters = Vec<Key>;

/// Notes that the Service `key` wants the virtual services of `servers`.
fn want(wanters: &mut HashMap<ServiceId, Wanters>, key: &Key, servers: &[Desired]) {
    for d in servers {
        let list = wanters.entry(d.server.service.id).or_default();
        if let Err(at) = list.binary_search(key) {
            list.insert(at, key.clone());
        }
    }
}

/// Notes that the Service `key` no longer wants those of `servers`.
fn unwant(wanters: &mut HashMap<ServiceId, Wanters>, key: &Key, servers: &[Desired]) {
    for d in servers {
        let id = d.server.service.id;
        if let Some(list) = wanters.get_mut(&id) {
            if let Ok(at) = list.binary_search(key) {
                list.remove(at);
            }
            if list.is_empty() {
                wanters.remove(&id);
            }
        }
    }
}

impl Incremental {
    /// Nothing mapped yet: the first map maps everything.
    pub fn new() -> Self {
        Incremental::default()
    }

    /// The desired table of `services` and `slices` on `node`, as
    /// [`map_refs`](super::map_refs) gives it, mapping anew only the
    /// Services whose object or slices are not the ones of the last map
    /// (by identity), and what changed.
    pub fn map(
        &mut self,
        services: &[Arc<core::Service>],
        slices: &[Arc<discovery::EndpointSlice>],
        node: &Node,
    ) -> (Mapped, Changes) {
        let (mapped, changes, _) = self.map_or_keep(services, slices, node, None);
        (mapped, changes)
    }

    /// [`Incremental::map`], given the table the last call returned
    /// (`last`; the caller may have given it firewall marks with
    /// [`assign_fwmarks`](super::assign_fwmarks), whose additions at the
    /// end of its lists are taken off). When no Service was mapped anew,
    /// added or removed and the node is the same, that is returned as it
    /// is: a no-op resync puts nothing together; otherwise it is patched,
    /// each Service's part moved over as it is but the parts that
    /// changed, put together anew. The flag says whether the table is
    /// not `last` as it was given.
    ///
    /// What changed is found by the objects' identities: one lookup of
    /// each object's address, then work for the objects that are new or
    /// gone alone.
    pub fn map_or_keep(
        &mut self,
        services: &[Arc<core::Service>],
        slices: &[Arc<discovery::EndpointSlice>],
        node: &Node,
        last: Option<Mapped>,
    ) -> (Mapped, Changes, bool) {
        let mut changes = Changes::default();
        if self.node.as_ref() != Some(node) {
            self.entries.clear();
            self.wanters.clear();
            self.services.clear();
            self.slices.clear();
            self.slices_of.clear();
            self.shape = None;
            self.node = Some(node.clone());
            changes.all = true;
        }
        let (new_services, gone_services) = compare(services, &self.services);
        let (new_slices, gone_slices) = compare(slices, &self.slices);
        // The Services whose object or slices may have changed, with the
        // objects that came for them.
        let mut touched: BTreeMap<Key, Option<Arc<core::Service>>> = BTreeMap::new();
        for a in gone_services {
            if let Some(svc) = self.services.remove(&a) {
                touched.entry(key_of(&svc)).or_default();
            }
        }
        for svc in new_services {
            self.services.insert(address(&svc), Arc::clone(&svc));
            touched.insert(key_of(&svc), Some(svc));
        }
        for a in gone_slices {
            if let Some((slice, Some(owner))) = self.slices.remove(&a) {
                if let Some(list) = self.slices_of.get_mut(&owner) {
                    list.retain(|s| !Arc::ptr_eq(s, &slice));
                    if list.is_empty() {
                        self.slices_of.remove(&owner);
                    }
                }
                touched.entry(owner).or_default();
            }
        }
        for slice in new_slices {
            let owner = owner_of(&slice);
            if let Some(owner) = &owner {
                self.slices_of
                    .entry(owner.clone())
                    .or_default()
                    .push(Arc::clone(&slice));
                touched.entry(owner.clone()).or_default();
            }
            self.slices.insert(address(&slice), (slice, owner));
        }
        let mut anew: Vec<Key> = Vec::new();
        let mut gone: Vec<Key> = Vec::new();
        for (key, came) in touched {
            let entry = self
                .entries
                .get_mut(&key.0)
                .and_then(|names| names.get_mut(&key.1));
            // The Service's object now: the one that came, else the one
            // it had unless that went.
            let svc = came.or_else(|| {
                entry
                    .as_ref()
                    .map(|e| &e.service)
                    .filter(|s| self.services.contains_key(&address(s)))
                    .cloned()
            });
            let mut now: Vec<Arc<discovery::EndpointSlice>> =
                self.slices_of.get(&key).cloned().unwrap_or_default();
            if now.len() > 1 {
                now.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            }
            let mut held = Held::default();
            match (svc, entry) {
                (None, None) => continue,
                (Some(svc), Some(entry)) => {
                    let same = Arc::ptr_eq(&entry.service, &svc)
                        && entry.slices.len() == now.len()
                        && entry
                            .slices
                            .iter()
                            .zip(&now)
                            .all(|(a, b)| Arc::ptr_eq(a, b));
                    if same {
                        continue;
                    }
                    changes
                        .ids
                        .extend(entry.servers.iter().map(|d| d.server.service.id));
                    unwant(&mut self.wanters, &key, &entry.servers);
                    held = entry.held;
                    let entry = Self::entry(&svc, now, node, held);
                    self.map_anew(&key, entry, &mut changes);
                    anew.push(key);
                }
                (Some(svc), None) => {
                    let entry = Self::entry(&svc, now, node, held);
                    self.map_anew(&key, entry, &mut changes);
                    anew.push(key);
                }
                // Gone: its part leaves the table at the assembly, then
                // it is forgotten.
                (None, Some(entry)) => {
                    changes
                        .ids
                        .extend(entry.servers.iter().map(|d| d.server.service.id));
                    changes.services += 1;
                    unwant(&mut self.wanters, &key, &entry.servers);
                    entry.gone = true;
                    entry.dirty = true;
                    gone.push(key);
                }
            }
        }
        let last = match last {
            Some(last) if !changes.all && changes.services == 0 => {
                return (last, changes, false);
            }
            last => last,
        };
        self.resolve(&changes.ids, &anew);
        let mapped = self.assemble(last, node);
        // Forget the gone.
        for (ns, n) in gone {
            if let Some(names) = self.entries.get_mut(&ns) {
                names.remove(&n);
                if names.is_empty() {
                    self.entries.remove(&ns);
                }
            }
        }
        (mapped, changes, true)
    }

    /// Puts `entry`, just mapped, in the place of Service `key`.
    fn map_anew(&mut self, key: &Key, entry: Entry, changes: &mut Changes) {
        changes
            .ids
            .extend(entry.servers.iter().map(|d| d.server.service.id));
        changes.services += 1;
        want(&mut self.wanters, key, &entry.servers);
        self.entries
            .entry(key.0.clone())
            .or_default()
            .insert(key.1.clone(), entry);
    }

    /// The part of one Service, from its slices in name order.
    fn entry(
        svc: &Arc<core::Service>,
        slices: Vec<Arc<discovery::EndpointSlice>>,
        node: &Node,
        held: Held,
    ) -> Entry {
        let refs: Vec<&discovery::EndpointSlice> = slices.iter().map(|s| &**s).collect();
        let model = service_model(svc, &refs, node.name.as_deref(), node.zone.as_deref());
        let mut servers: Vec<Desired> = match &model.ports {
            Some(Ok(ports)) => ports.iter().flat_map(|p| port_servers(p, node)).collect(),
            _ => Vec::new(),
        };
        // Kept as long as the Service is: no room for more (a collect of
        // one virtual service leaves room for four, 700 bytes more).
        servers.shrink_to_fit();
        Entry {
            service: Arc::clone(svc),
            slices,
            model,
            kept: vec![false; servers.len()],
            servers,
            conflicts: Vec::new(),
            held,
            dirty: true,
            gone: false,
        }
    }

    /// Which virtual services each Service mapped anew (`anew`), or
    /// wanting one of `ids` (whose hands may have changed), has, and the warnings of
    /// those it wants but another has: as [`keep_first`](super::keep_first)
    /// gives them, Service after Service. Those Services' parts are
    /// marked to be put together anew.
    fn resolve(&mut self, ids: &HashSet<ServiceId>, anew: &[Key]) {
        let mut touched: BTreeSet<(&str, &str)> = BTreeSet::new();
        for id in ids {
            for (ns, n) in self.wanters.get(id).into_iter().flatten() {
                touched.insert((ns, n));
            }
        }
        for (ns, n) in anew {
            touched.insert((ns.as_str(), n.as_str()));
        }
        let mut resolved: Vec<(Key, Vec<bool>, Vec<String>)> = Vec::with_capacity(touched.len());
        for key in touched {
            let Some(entry) = self.entries.get(key.0).and_then(|names| names.get(key.1)) else {
                continue;
            };
            let mut kept = Vec::with_capacity(entry.servers.len());
            let mut conflicts = Vec::new();
            for (i, vs) in entry.servers.iter().enumerate() {
                let id = vs.server.service.id;
                let first = self.wanters.get(&id).and_then(|w| w.first());
                let mine = first.is_some_and(|(ns, n)| ns.as_str() == key.0 && n.as_str() == key.1);
                let own = |servers: &[Desired]| {
                    servers
                        .iter()
                        .position(|d| d.server.service.id == id)
                        .unwrap_or(0)
                };
                let first_origin = if mine {
                    let j = own(&entry.servers);
                    kept.push(j == i);
                    entry.servers.get(j).map(|d| d.origin.as_str())
                } else {
                    kept.push(false);
                    first
                        .and_then(|(ns, n)| self.entries.get(ns).and_then(|names| names.get(n)))
                        .and_then(|e| e.servers.get(own(&e.servers)))
                        .map(|d| d.origin.as_str())
                };
                if let Some(first) = first_origin {
                    if !kept[i] && first != vs.origin {
                        conflicts.push(format!(
                            "{id} is wanted by {first} and by {}: kept {first}",
                            vs.origin
                        ));
                    }
                }
            }
            resolved.push(((key.0.to_owned(), key.1.to_owned()), kept, conflicts));
        }
        for ((ns, n), kept, conflicts) in resolved {
            if let Some(entry) = self
                .entries
                .get_mut(&ns)
                .and_then(|names| names.get_mut(&n))
            {
                entry.kept = kept;
                entry.conflicts = conflicts;
                entry.dirty = true;
            }
        }
    }

    /// The table of the entries, in order, as
    /// [`ipvs_table`](super::ipvs_table) assembles it: from `last` (the
    /// table the last call returned) each part that did not change,
    /// moved, and the others anew; all anew without `last`, or when
    /// `last` is not that table.
    fn assemble(&mut self, last: Option<Mapped>, node: &Node) -> Mapped {
        let last = last.filter(|m| {
            self.shape.is_some_and(|s| {
                m.desired.len() >= s.desired
                    && m.warnings.len() >= s.warnings + s.conflicts
                    && m.problems.len() == s.problems
                    && m.ports.len() == s.ports
                    && m.node_ips == node.ips
            })
        });
        let patching = last.is_some();
        let mut last = last.unwrap_or_default();
        let shape = self.shape.unwrap_or_default();
        // Firewall-mark services and warnings come after the parts.
        last.desired.truncate(shape.desired);
        last.warnings.truncate(shape.warnings + shape.conflicts);
        let old_conflicts = last
            .warnings
            .split_off(shape.warnings.min(last.warnings.len()));
        let mut old = (
            last.desired.into_iter(),
            last.warnings.into_iter(),
            old_conflicts.into_iter(),
            last.problems.into_iter(),
            last.ports.into_iter(),
        );
        let mut out = Mapped {
            desired: Vec::with_capacity(shape.desired + 8),
            warnings: Vec::with_capacity(shape.warnings + shape.conflicts),
            problems: Vec::with_capacity(shape.problems),
            ports: Vec::with_capacity(shape.ports + 8),
            node_ips: node.ips.clone(),
        };
        let mut conflicts = Vec::with_capacity(shape.conflicts);
        let mut total = Held::default();
        for entry in self.entries.values_mut().flat_map(BTreeMap::values_mut) {
            let h = entry.held;
            if patching && !entry.dirty {
                out.desired.extend(old.0.by_ref().take(h.desired));
                out.warnings.extend(old.1.by_ref().take(h.warnings));
                conflicts.extend(old.2.by_ref().take(h.conflicts));
                out.problems.extend(old.3.by_ref().take(h.problems));
                // Without the firewall marks the caller may have given.
                out.ports
                    .extend(old.4.by_ref().take(h.ports).map(|mut port| {
                        port.fwmark = None;
                        port
                    }));
            } else {
                if patching {
                    old.0.by_ref().take(h.desired).for_each(drop);
                    old.1.by_ref().take(h.warnings).for_each(drop);
                    old.2.by_ref().take(h.conflicts).for_each(drop);
                    old.3.by_ref().take(h.problems).for_each(drop);
                    old.4.by_ref().take(h.ports).for_each(drop);
                }
                if !entry.gone {
                    out.warnings.extend(entry.model.warnings.iter().cloned());
                    match &entry.model.ports {
                        Some(Ok(ports)) => out.ports.extend(ports.iter().cloned()),
                        Some(Err(problem)) => out.problems.push(problem.clone()),
                        None => {}
                    }
                    out.desired.extend(
                        entry
                            .servers
                            .iter()
                            .zip(&entry.kept)
                            .filter(|(_, kept)| **kept)
                            .map(|(d, _)| d.clone()),
                    );
                    conflicts.extend(entry.conflicts.iter().cloned());
                }
                entry.held = entry.holds();
                entry.dirty = false;
            }
            total.add(entry.held);
        }
        out.warnings.extend(conflicts);
        self.shape = Some(total);
        out
    }
}

#[cfg(test)]
pub(crate) mod tests;
