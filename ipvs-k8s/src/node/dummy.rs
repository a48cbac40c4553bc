//! The dummy interface the virtual addresses are bound to, so that the
//! node takes packets to them as its own and IPVS sees them: `kube-ipvs0`
//! by default, as kube-proxy names it.
//!
//! As kube-proxy: the interface is created (kind `dummy`) when missing and
//! left down; each wanted address is bound alone (/32, /128); every other
//! address on it is removed. Unlike kube-proxy:
//! - an interface of that name that is not a dummy is refused, never
//!   emptied (a mistyped `--interface eth0` must not strip the node);
//! - IPv6 addresses get `IFA_F_NODAD`, so that they are usable at once
//!   (kube-proxy relies on the dummy's NOARP flag for that);
//! - IPv6 link-local addresses, which the kernel manages, are kept.
//!
//! A wanted address that is already on another interface (an external or
//! load-balancer IP that is a node address) is not bound, as kube-proxy
//! does not bind it: the node already takes it.
//!
//! With `--local-routes` ([`Binding::LocalRoutes`]) each wanted address
//! is a local route through the interface instead (`ip route add local
//! IP dev kube-ipvs0 table local proto 118`): the kernel takes the
//! packets as its own all the same (and gives the node's own connections
//! the address as source, as for an address), but adding one costs the
//! same at 10,000 as at 10 (the kernel walks the interface's address
//! list on every address add, so binding n addresses costs n squared).
//! Addresses on the interface are then removed once their route is in
//! place, so a switch from one way to the other drops nothing.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

use super::rtnl::{Address, Link, LocalRoute, Rtnl};

/// How the virtual addresses are made the node's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Binding {
    /// Each an address of the dummy interface, as kube-proxy binds them:
    /// the default, because tools read the ClusterIPs from
    /// `ip addr show kube-ipvs0` and a migration from kube-proxy finds
    /// its addresses where it left them.
    #[default]
    Addresses,
    /// Each a local route of this tool through the dummy interface
    /// (`--local-routes`): linear where addresses are quadratic.
    LocalRoutes,
}

/// What a bind changed (or, planned, would change).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The interface was created (would be, for a plan).
    pub created: bool,
    /// Addresses added, in order.
    pub added: Vec<IpAddr>,
    /// Addresses removed, in order.
    pub removed: Vec<IpAddr>,
    /// Wanted addresses left out because another interface has them.
    pub elsewhere: Vec<IpAddr>,
    /// Each add or remove that failed, as a sentence (the others are
    /// still done).
    pub errors: Vec<String>,
}

impl Changes {
    /// Whether nothing changed and nothing failed.
    pub fn is_empty(&self) -> bool {
        !self.created && self.added.is_empty() && self.removed.is_empty() && self.errors.is_empty()
    }
}

/// Whether the kernel manages this address of the interface itself.
fn kernel_managed(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local())
}

/// What to add to and remove from the interface `index` so that it holds
/// exactly `wanted`, given every address of the node (`all`). Pure.
/// Returns the addresses to add, those to remove, and the wanted ones
/// left out because another interface has them.
pub fn diff(
    index: Option<u32>,
    all: &[Address],
    wanted: &BTreeSet<IpAddr>,
) -> (Vec<IpAddr>, Vec<Address>, Vec<IpAddr>) {
    let mine = |a: &&Address| Some(a.index) == index;
    let here: HashSet<IpAddr> = all.iter().filter(mine).map(|a| a.ip).collect();
    let other: HashSet<IpAddr> = all.iter().filter(|a| !mine(a)).map(|a| a.ip).collect();
    let elsewhere: Vec<IpAddr> = wanted
        .iter()
        .filter(|ip| other.contains(*ip) && !here.contains(*ip))
        .copied()
        .collect();
    let add: Vec<IpAddr> = wanted
        .iter()
        .filter(|ip| !here.contains(*ip) && !other.contains(*ip))
        .copied()
        .collect();
    let mut remove: Vec<Address> = all
        .iter()
        .filter(mine)
        .filter(|a| !wanted.contains(&a.ip) && !kernel_managed(&a.ip))
        .copied()
        .collect();
    remove.sort();
    remove.dedup();
    (add, remove, elsewhere)
}

/// What to change so that the interface `index` routes exactly `wanted`
/// as local routes of this tool ([`Binding::LocalRoutes`]), given every
/// address of the node and every local route of this tool. Pure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePlan {
    /// Local routes to add.
    pub add: Vec<IpAddr>,
    /// Local routes of this tool to remove.
    pub remove: Vec<IpAddr>,
    /// Addresses of the interface to remove once the routes are in
    /// place (those of the other way of binding, wanted or not).
    pub unbind: Vec<Address>,
    /// Wanted addresses left out because another interface has them.
    pub elsewhere: Vec<IpAddr>,
}

/// The [`RoutePlan`] for interface `index` (`None`: not there yet),
/// never removing a route or an address of `keep` (those of virtual
/// services another tool or instance holds).
pub fn diff_routes(
    index: Option<u32>,
    all: &[Address],
    routes: &[LocalRoute],
    wanted: &BTreeSet<IpAddr>,
    keep: &BTreeSet<IpAddr>,
) -> RoutePlan {
    let routed: BTreeSet<IpAddr> = routes
        .iter()
        .filter(|r| Some(r.index) == index)
        .map(|r| r.ip)
        .collect();
    let other: HashSet<IpAddr> = all
        .iter()
        .filter(|a| Some(a.index) != index)
        .map(|a| a.ip)
        .collect();
    let mut unbind: Vec<Address> = all
        .iter()
        .filter(|a| Some(a.index) == index && !kernel_managed(&a.ip) && !keep.contains(&a.ip))
        .copied()
        .collect();
    unbind.sort();
    unbind.dedup();
    RoutePlan {
        add: wanted
            .iter()
            .filter(|ip| !routed.contains(*ip) && !other.contains(*ip))
            .copied()
            .collect(),
        remove: routed
            .iter()
            .filter(|ip| (!wanted.contains(*ip) || other.contains(*ip)) && !keep.contains(*ip))
            .copied()
            .collect(),
        unbind,
        elsewhere: wanted
            .iter()
            .filter(|ip| other.contains(*ip))
            .copied()
            .collect(),
    }
}

/// The dummy interface, found or created.
#[derive(Debug)]
pub struct Dummy {
    rtnl: Rtnl,
    link: Link,
    binding: Binding,
    /// Whether [`Dummy::ensure`] created it.
    pub created: bool,
}

fn check_kind(link: &Link) -> Result<(), String> {
    match link.kind.as_deref() {
        Some("dummy") => Ok(()),
        other => Err(format!(
            "interface {} exists and is not a dummy interface (kind {}): refusing to manage its addresses",
            link.name,
            other.unwrap_or("none")
        )),
    }
}

impl Dummy {
    /// Finds the dummy interface `name`, creating it when missing. An
    /// interface of that name of another kind is an error.
    pub fn ensure(name: &str) -> Result<Dummy, String> {
        let mut rtnl = Rtnl::open().map_err(|e| e.to_string())?;
        let (link, created) = match rtnl.link(name).map_err(|e| e.to_string())? {
            Some(link) => (link, false),
            None => {
                rtnl.add_dummy(name).map_err(|e| e.to_string())?;
                let link = rtnl
                    .link(name)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("interface {name} is gone right after its creation"))?;
                (link, true)
            }
        };
        check_kind(&link)?;
        Ok(Dummy {
            rtnl,
            link,
            binding: Binding::Addresses,
            created,
        })
    }

    /// This interface, binding the virtual addresses the way `binding`
    /// says from now on.
    pub fn with_binding(mut self, binding: Binding) -> Dummy {
        self.binding = binding;
        self
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.link.name
    }

    /// The interface's index.
    pub fn index(&self) -> u32 {
        self.link.index
    }

    /// The virtual addresses the node takes through the interface now:
    /// its addresses, and this tool's local routes through it.
    pub fn addresses(&mut self) -> Result<BTreeSet<IpAddr>, String> {
        let all = self.rtnl.addresses().map_err(|e| e.to_string())?;
        let routes = self.rtnl.local_routes().map_err(|e| e.to_string())?;
        let index = self.link.index;
        Ok(all
            .iter()
            .filter(|a| a.index == index)
            .map(|a| a.ip)
            .chain(routes.iter().filter(|r| r.index == index).map(|r| r.ip))
            .collect())
    }

    /// Makes the interface hold exactly `wanted` (but addresses another
    /// interface has): adds the missing ones, removes the others. Each
    /// failed add or remove is in [`Changes::errors`]; `Err` when the
    /// addresses cannot even be listed.
    pub fn bind(&mut self, wanted: &BTreeSet<IpAddr>) -> Result<Changes, String> {
        self.bind_keeping(wanted, &BTreeSet::new())
    }

    /// [`Dummy::bind`], but never removing an address of `keep` (those of
    /// virtual services another tool or instance holds: only addresses of
    /// services this instance owns, or of none, are removed).
    pub fn bind_keeping(
        &mut self,
        wanted: &BTreeSet<IpAddr>,
        keep: &BTreeSet<IpAddr>,
    ) -> Result<Changes, String> {
        if self.binding == Binding::LocalRoutes {
            return self.route_keeping(wanted, keep);
        }
        let all = self.rtnl.addresses().map_err(|e| e.to_string())?;
        let (add, mut remove, elsewhere) = diff(Some(self.link.index), &all, wanted);
        remove.retain(|a| !keep.contains(&a.ip));
        let mut changes = Changes {
            created: self.created,
            elsewhere,
            ..Changes::default()
        };
        self.created = false;
        let name = self.link.name.clone();
        for addr in remove {
            self.unbind(&addr, &mut changes);
        }
        let results = self.rtnl.add_addresses(self.link.index, &add);
        for (ip, result) in add.into_iter().zip(results) {
            match result {
                Ok(()) => changes.added.push(ip),
                Err(e) if e.errno() == Some(libc::EEXIST) => {}
                Err(e) => changes
                    .errors
                    .push(format!("cannot bind {ip} to {name}: {e}")),
            }
        }
        Ok(changes)
    }

    /// Removes `addr` from the interface, saying so in `changes`.
    fn unbind(&mut self, addr: &Address, changes: &mut Changes) {
        match self.rtnl.delete_address(addr) {
            Ok(()) => changes.removed.push(addr.ip),
            // Gone meanwhile: what was wanted.
            Err(e) if e.errno() == Some(libc::EADDRNOTAVAIL) => changes.removed.push(addr.ip),
            Err(e) => changes.errors.push(format!(
                "cannot remove {} from {}: {e}",
                addr.ip, self.link.name
            )),
        }
    }

    /// [`Dummy::bind_keeping`] with [`Binding::LocalRoutes`]: the routes
    /// first, then the addresses they replace, then the routes no longer
    /// wanted (never those of `keep`).
    fn route_keeping(
        &mut self,
        wanted: &BTreeSet<IpAddr>,
        keep: &BTreeSet<IpAddr>,
    ) -> Result<Changes, String> {
        let all = self.rtnl.addresses().map_err(|e| e.to_string())?;
        let routes = self.rtnl.local_routes().map_err(|e| e.to_string())?;
        let index = self.link.index;
        let plan = diff_routes(Some(index), &all, &routes, wanted, keep);
        let name = self.link.name.clone();
        // IPv6 takes a route through an interface only while it is up
        // (ENETDOWN otherwise; IPv4 takes it either way): set up before
        // each add, which also mends an interface set down by hand.
        let mut results = Vec::new();
        if !plan.add.is_empty() {
            self.rtnl
                .set_up(index)
                .map_err(|e| format!("cannot set {name} up for its routes: {e}"))?;
            results = self.rtnl.add_local_routes(index, &plan.add);
        }
        let mut changes = Changes {
            created: self.created,
            elsewhere: plan.elsewhere,
            ..Changes::default()
        };
        self.created = false;
        let mut routed: HashSet<IpAddr> = routes
            .iter()
            .filter(|r| r.index == index)
            .map(|r| r.ip)
            .collect();
        for (ip, result) in plan.add.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    changes.added.push(ip);
                    routed.insert(ip);
                }
                Err(e) if e.errno() == Some(libc::EEXIST) => {
                    routed.insert(ip);
                }
                Err(e) => changes
                    .errors
                    .push(format!("cannot route {ip} through {name}: {e}")),
            }
        }
        for addr in plan.unbind {
            // A wanted address goes only once its route is in place.
            if wanted.contains(&addr.ip) && !routed.contains(&addr.ip) {
                continue;
            }
            self.unbind(&addr, &mut changes);
        }
        // The kernel flushes every IPv4 route through an interface when
        // its last IPv4 address goes (`fib_disable_ip`), ours with them:
        // put back the wanted ones that went (a gap of one round trip, once,
        // when the last address is replaced).
        if changes.removed.iter().any(IpAddr::is_ipv4) {
            let now: HashSet<IpAddr> = self
                .rtnl
                .local_routes()
                .map_err(|e| e.to_string())?
                .iter()
                .filter(|r| r.index == index)
                .map(|r| r.ip)
                .collect();
            let lost: Vec<IpAddr> = routed
                .iter()
                .filter(|ip| wanted.contains(*ip) && !now.contains(*ip))
                .copied()
                .collect();
            for (ip, result) in lost.iter().zip(self.rtnl.add_local_routes(index, &lost)) {
                match result {
                    Ok(()) => {}
                    Err(e) if e.errno() == Some(libc::EEXIST) => {}
                    Err(e) => changes
                        .errors
                        .push(format!("cannot route {ip} through {name}: {e}")),
                }
            }
        }
        let results = self.rtnl.delete_local_routes(index, &plan.remove);
        for (ip, result) in plan.remove.into_iter().zip(results) {
            match result {
                // Gone meanwhile: what was wanted.
                Ok(()) => changes.removed.push(ip),
                Err(e) if e.errno() == Some(libc::ESRCH) => changes.removed.push(ip),
                Err(e) => changes.errors.push(format!(
                    "cannot remove the route of {ip} through {name}: {e}"
                )),
            }
        }
        Ok(changes)
    }
}

/// What [`Dummy::bind`] would do to the interface `name`, changing
/// nothing (for `--dry-run`). An interface of that name that is not a
/// dummy is an error, as it would be for a real run.
pub fn plan(name: &str, wanted: &BTreeSet<IpAddr>) -> Result<Changes, String> {
    plan_keeping(name, Binding::Addresses, wanted, &BTreeSet::new())
}

/// [`plan`] for `binding`, never removing an address of `keep`
/// ([`Dummy::bind_keeping`]).
pub fn plan_keeping(
    name: &str,
    binding: Binding,
    wanted: &BTreeSet<IpAddr>,
    keep: &BTreeSet<IpAddr>,
) -> Result<Changes, String> {
    let mut rtnl = Rtnl::open().map_err(|e| e.to_string())?;
    let link = rtnl.link(name).map_err(|e| e.to_string())?;
    if let Some(link) = &link {
        check_kind(link)?;
    }
    let all = rtnl.addresses().map_err(|e| e.to_string())?;
    if binding == Binding::LocalRoutes {
        let routes = rtnl.local_routes().map_err(|e| e.to_string())?;
        let plan = diff_routes(link.as_ref().map(|l| l.index), &all, &routes, wanted, keep);
        return Ok(Changes {
            created: link.is_none(),
            added: plan.add,
            removed: plan
                .unbind
                .iter()
                .map(|a| a.ip)
                .chain(plan.remove)
                .collect(),
            elsewhere: plan.elsewhere,
            errors: Vec::new(),
        });
    }
    let (added, mut remove, elsewhere) = diff(link.as_ref().map(|l| l.index), &all, wanted);
    remove.retain(|a| !keep.contains(&a.ip));
    Ok(Changes {
        created: link.is_none(),
        added,
        removed: remove.iter().map(|a| a.ip).collect(),
        elsewhere,
        errors: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(index: u32, ip: &str) -> Address {
        let ip: IpAddr = ip.parse().unwrap();
        Address {
            index,
            ip,
            prefix_len: super::super::rtnl::host_prefix(ip),
        }
    }

    fn set(ips: &[&str]) -> BTreeSet<IpAddr> {
        ips.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ips(v: &[&str]) -> Vec<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn the_interface_ends_with_exactly_the_wanted_addresses() {
        // Interface 7 is the dummy; 2 is eth0.
        let all = vec![
            a(2, "192.168.49.2"),
            a(2, "10.96.5.5"), // an external IP that is a node address
            a(7, "10.96.0.1"),
            a(7, "10.96.0.99"), // a Service that went
            a(7, "fd00::99"),
            a(7, "fe80::1"), // link-local: the kernel's
        ];
        let wanted = set(&["10.96.0.1", "10.96.0.10", "10.96.5.5", "fd00::10"]);
        let (add, remove, elsewhere) = diff(Some(7), &all, &wanted);
        assert_eq!(add, ips(&["10.96.0.10", "fd00::10"]));
        assert_eq!(remove, vec![a(7, "10.96.0.99"), a(7, "fd00::99")]);
        assert_eq!(elsewhere, ips(&["10.96.5.5"]));
    }

    #[test]
    fn a_missing_interface_gets_every_wanted_address_and_nothing_is_removed() {
        let all = vec![a(2, "192.168.49.2"), a(1, "127.0.0.1")];
        let (add, remove, elsewhere) = diff(None, &all, &set(&["10.96.0.1", "127.0.0.1"]));
        assert_eq!(add, ips(&["10.96.0.1"]));
        assert!(remove.is_empty());
        assert_eq!(elsewhere, ips(&["127.0.0.1"]));
        // Nothing wanted: everything of ours goes.
        let all = vec![a(7, "10.96.0.1"), a(2, "10.96.0.1")];
        let (add, remove, elsewhere) = diff(Some(7), &all, &BTreeSet::new());
        assert!(add.is_empty() && elsewhere.is_empty());
        assert_eq!(remove, vec![a(7, "10.96.0.1")]);
    }

    fn r(index: u32, ip: &str) -> LocalRoute {
        LocalRoute {
            index,
            ip: ip.parse().unwrap(),
        }
    }

    #[test]
    fn local_routes_replace_addresses_and_leave_other_interfaces_alone() {
        // Interface 7 is the dummy; 2 is eth0, 9 another dummy.
        let all = vec![
            a(2, "192.168.49.2"),
            a(2, "10.96.5.5"),  // an external IP that is a node address
            a(7, "10.96.0.1"),  // bound as an address by an earlier run
            a(7, "10.96.0.99"), // a Service that went
            a(7, "fe80::1"),    // link-local: the kernel's
        ];
        let routes = vec![
            r(7, "10.96.0.10"),
            r(7, "10.96.0.98"), // a Service that went
            r(9, "10.96.0.50"), // another interface's: not ours to judge
        ];
        let wanted = set(&["10.96.0.1", "10.96.0.10", "10.96.5.5", "fd00::10"]);
        let plan = diff_routes(Some(7), &all, &routes, &wanted, &BTreeSet::new());
        assert_eq!(plan.add, ips(&["10.96.0.1", "fd00::10"]));
        assert_eq!(plan.remove, ips(&["10.96.0.98"]));
        assert_eq!(plan.unbind, vec![a(7, "10.96.0.1"), a(7, "10.96.0.99")]);
        assert_eq!(plan.elsewhere, ips(&["10.96.5.5"]));
        // Another instance's addresses and routes (`keep`) stay.
        let keep = set(&["10.96.0.98", "10.96.0.99"]);
        let kept = diff_routes(Some(7), &all, &routes, &wanted, &keep);
        assert!(kept.remove.is_empty());
        assert_eq!(kept.unbind, vec![a(7, "10.96.0.1")]);
        assert_eq!(kept.add, plan.add);
        // Once applied, a second plan is empty.
        let all = vec![a(2, "192.168.49.2"), a(2, "10.96.5.5"), a(7, "fe80::1")];
        let routes = vec![
            r(7, "10.96.0.1"),
            r(7, "10.96.0.10"),
            r(7, "fd00::10"),
            r(9, "10.96.0.50"),
        ];
        let plan = diff_routes(Some(7), &all, &routes, &wanted, &BTreeSet::new());
        assert!(plan.add.is_empty() && plan.remove.is_empty() && plan.unbind.is_empty());
        // No interface yet: every wanted address is routed, nothing goes.
        let plan = diff_routes(None, &all, &routes, &wanted, &BTreeSet::new());
        assert_eq!(plan.add, ips(&["10.96.0.1", "10.96.0.10", "fd00::10"]));
        assert!(plan.remove.is_empty() && plan.unbind.is_empty());
    }

    #[test]
    fn an_address_on_both_the_dummy_and_another_interface_stays() {
        let all = vec![a(7, "10.96.0.1"), a(2, "10.96.0.1")];
        let (add, remove, elsewhere) = diff(Some(7), &all, &set(&["10.96.0.1"]));
        assert!(add.is_empty() && remove.is_empty() && elsewhere.is_empty());
    }

    #[test]
    fn only_dummies_are_managed() {
        let eth = Link {
            index: 2,
            name: "eth0".into(),
            kind: Some("veth".into()),
            alias: None,
        };
        assert_eq!(
            check_kind(&eth).unwrap_err(),
            "interface eth0 exists and is not a dummy interface (kind veth): refusing to manage its addresses"
        );
        let lo = Link {
            index: 1,
            name: "lo".into(),
            kind: None,
            alias: None,
        };
        assert!(check_kind(&lo).unwrap_err().contains("(kind none)"));
        let dummy = Link {
            index: 7,
            name: "kube-ipvs0".into(),
            kind: Some("dummy".into()),
            alias: None,
        };
        assert_eq!(check_kind(&dummy), Ok(()));
    }
}
