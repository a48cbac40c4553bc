//! The mapping of the live loop, one Service at a time: each Service's
//! part of the [`Mapped`] table is kept with the objects it came from
//! (the watch cache's shared objects, compared by identity: the cache
//! hands out a new object for every change it is told of), and only the
//! Services whose object or EndpointSlices changed are mapped anew. A
//! change of the node (its addresses, name, zone or default scheduler,
//! which every Service's part depends on) maps everything anew.
//!
//! The result is what [`map_refs`](super::map_refs) gives for the same
//! objects (the tests check it on random sequences of changes), with
//! [`Changes`]: which virtual services can differ from the last map's,
//! so that the sync plans only those.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ipvs_netlink::ServiceId;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;

use super::{
    has_label, keep_first, labels, port_servers, service_model, Desired, Mapped, Node,
    ServiceModel, HEADLESS, SERVICE_NAME, SERVICE_PROXY_NAME,
};

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
    /// The map that last saw it.
    seen: u64,
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
    /// By namespace, then name.
    entries: HashMap<String, HashMap<String, Entry>>,
    /// The number of maps so far.
    maps: u64,
    /// The objects of the last map, as given (held, so that identity
    /// holds: no new object can take the address of one of these).
    last: (Vec<Arc<core::Service>>, Vec<Arc<discovery::EndpointSlice>>),
}

/// Whether `a` and `b` are the same objects in the same order.
fn same_objects<T>(a: &[Arc<T>], b: &[Arc<T>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| Arc::ptr_eq(a, b))
}

fn namespace(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

fn name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
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

    /// [`Incremental::map`], but when the table is the last map's (the
    /// node is the same and no Service was mapped anew, added or
    /// removed) and the caller kept it (`last`), that is returned as it
    /// is: a no-op resync puts nothing together. The flag says whether
    /// the table was put together anew.
    pub fn map_or_keep(
        &mut self,
        services: &[Arc<core::Service>],
        slices: &[Arc<discovery::EndpointSlice>],
        node: &Node,
        last: Option<Mapped>,
    ) -> (Mapped, Changes, bool) {
        // The very objects of the last map, in the same order, on the same
        // node (a no-op resync): nothing to compare one by one.
        if let Some(last) = last {
            if self.node.as_ref() == Some(node)
                && same_objects(&self.last.0, services)
                && same_objects(&self.last.1, slices)
            {
                return (last, Changes::default(), false);
            }
            return self.map_or_keep_each(services, slices, node, Some(last));
        }
        self.map_or_keep_each(services, slices, node, None)
    }

    /// [`Incremental::map_or_keep`] comparing each Service's objects.
    fn map_or_keep_each(
        &mut self,
        services: &[Arc<core::Service>],
        slices: &[Arc<discovery::EndpointSlice>],
        node: &Node,
        last: Option<Mapped>,
    ) -> (Mapped, Changes, bool) {
        self.last = (services.to_vec(), slices.to_vec());
        self.maps += 1;
        let seen = self.maps;
        let mut changes = Changes::default();
        if self.node.as_ref() != Some(node) {
            self.entries.clear();
            self.node = Some(node.clone());
            changes.all = true;
        }
        let mut slices_of: HashMap<(&str, &str), Vec<&Arc<discovery::EndpointSlice>>> =
            HashMap::new();
        for slice in slices {
            let meta = &slice.metadata;
            if has_label(meta, SERVICE_PROXY_NAME) || has_label(meta, HEADLESS) {
                continue;
            }
            let Some(owner) = labels(meta).and_then(|l| l.get(SERVICE_NAME)) else {
                continue;
            };
            slices_of
                .entry((namespace(meta), owner.as_str()))
                .or_default()
                .push(slice);
        }
        for list in slices_of.values_mut() {
            list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        }
        let mut order: Vec<&Arc<core::Service>> = services.iter().collect();
        order.sort_by(|a, b| {
            (namespace(&a.metadata), name(&a.metadata))
                .cmp(&(namespace(&b.metadata), name(&b.metadata)))
        });
        let none = Vec::new();
        for svc in &order {
            let (ns, n) = (namespace(&svc.metadata), name(&svc.metadata));
            let now = slices_of.get(&(ns, n)).unwrap_or(&none);
            if let Some(entry) = self.entries.get_mut(ns).and_then(|names| names.get_mut(n)) {
                let same = Arc::ptr_eq(&entry.service, svc)
                    && entry.slices.len() == now.len()
                    && entry.slices.iter().zip(now).all(|(a, b)| Arc::ptr_eq(a, b));
                if same {
                    entry.seen = seen;
                    continue;
                }
                changes
                    .ids
                    .extend(entry.servers.iter().map(|d| d.server.service.id));
            }
            let entry = Self::entry(svc, now, node, seen);
            changes
                .ids
                .extend(entry.servers.iter().map(|d| d.server.service.id));
            changes.services += 1;
            self.entries
                .entry(ns.to_owned())
                .or_default()
                .insert(n.to_owned(), entry);
        }
        // The Services gone.
        for names in self.entries.values_mut() {
            names.retain(|_, entry| {
                let kept = entry.seen == seen;
                if !kept {
                    changes
                        .ids
                        .extend(entry.servers.iter().map(|d| d.server.service.id));
                    changes.services += 1;
                }
                kept
            });
        }
        self.entries.retain(|_, names| !names.is_empty());
        match last {
            Some(last) if !changes.all && changes.services == 0 => (last, changes, false),
            _ => (self.assemble(&order, node), changes, true),
        }
    }

    /// The part of one Service.
    fn entry(
        svc: &Arc<core::Service>,
        slices: &[&Arc<discovery::EndpointSlice>],
        node: &Node,
        seen: u64,
    ) -> Entry {
        let refs: Vec<&discovery::EndpointSlice> = slices.iter().map(|s| &***s).collect();
        let model = service_model(svc, &refs, node.name.as_deref(), node.zone.as_deref());
        let servers = match &model.ports {
            Some(Ok(ports)) => ports.iter().flat_map(|p| port_servers(p, node)).collect(),
            _ => Vec::new(),
        };
        Entry {
            service: Arc::clone(svc),
            slices: slices.iter().map(|s| Arc::clone(s)).collect(),
            model,
            servers,
            seen,
        }
    }

    /// The table of the Services in `order`, each from its entry, as
    /// [`ipvs_table`](super::ipvs_table) assembles it.
    fn assemble(&self, order: &[&Arc<core::Service>], node: &Node) -> Mapped {
        let entries: Vec<&Entry> = order
            .iter()
            .filter_map(|svc| {
                self.entries
                    .get(namespace(&svc.metadata))
                    .and_then(|names| names.get(name(&svc.metadata)))
            })
            .collect();
        let mut out = Mapped::default();
        for entry in &entries {
            out.warnings.extend(entry.model.warnings.iter().cloned());
            match &entry.model.ports {
                Some(Ok(ports)) => out.ports.extend(ports.iter().cloned()),
                Some(Err(problem)) => out.problems.push(problem.clone()),
                None => {}
            }
        }
        let mut taken = HashMap::new();
        for entry in &entries {
            for vs in &entry.servers {
                keep_first(&mut out, &mut taken, vs.clone());
            }
        }
        out.node_ips = node.ips.clone();
        out
    }
}

#[cfg(test)]
pub(crate) mod tests;
