//! `--from-k8s --cleanup`: removes everything this tool created on the
//! node and nothing else, as `kube-proxy --cleanup` does for its own:
//! the packet path's table (`inet ipvs-rs`), the virtual services the
//! state file says it created (while they still have the settings it
//! wrote), their addresses on the dummy interface, and the interface
//! itself when this tool made it (its alias says so) and nothing is left
//! on it, and the conntrack entries to those addresses. The network
//! namespace's lock and the state file's are taken first, so a running
//! instance refuses the cleanup.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipvs_netlink::{Handle, ServiceId};

use crate::node::{self, nft::Nft, rtnl};
use crate::ownership::{settings, Recorded, StateFile};
use crate::{Args, Io};

/// What a cleanup removed, and what it could not.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The packet path's table was removed.
    pub table: bool,
    /// The virtual services removed.
    pub services: Vec<ServiceId>,
    /// The addresses removed from the dummy interface.
    pub addresses: Vec<IpAddr>,
    /// The dummy interface was removed.
    pub interface: bool,
    /// Conntrack entries of the removed services' addresses deleted.
    pub conntrack: usize,
    /// What could not be done, one line each.
    pub failures: Vec<String>,
    /// What was left alone, and why, one line each.
    pub kept: Vec<String>,
}

impl Removed {
    /// Whether there was nothing to remove.
    pub fn nothing(&self) -> bool {
        !self.table && self.services.is_empty() && self.addresses.is_empty() && !self.interface
    }
}

/// Removes the virtual services of `state` that still have the settings
/// this tool wrote, and returns the addresses they were on.
fn remove_services(handle: &mut Handle, state: &StateFile, out: &mut Removed) -> BTreeSet<IpAddr> {
    let mut addrs = BTreeSet::new();
    let services = match handle.services() {
        Ok(s) => s,
        Err(e) => {
            out.failures.push(format!(
                "cannot read the IPVS table: {}",
                ipvsadm_compat::messages::describe(&e)
            ));
            return addrs;
        }
    };
    for svc in services {
        let Some(recorded) = state.recorded.get(&svc.id) else {
            continue;
        };
        // A line of format 1 has no settings to check: left alone.
        let ours = match recorded {
            Recorded::Settings(set) => set.contains(&settings(&svc)),
            Recorded::Unknown => false,
        };
        if !ours {
            out.kept.push(format!(
                "{} no longer has the settings ipvsadm-rs wrote: left alone",
                svc.id
            ));
            continue;
        }
        match handle.delete_service(&svc.id) {
            Ok(()) => {
                if let ServiceId::Inet { addr, .. } = svc.id {
                    addrs.insert(addr);
                }
                out.services.push(svc.id);
            }
            Err(e) => out.failures.push(format!(
                "cannot remove {}: {}",
                svc.id,
                ipvsadm_compat::messages::describe(&e)
            )),
        }
    }
    addrs
}

/// Removes `addrs` from the dummy interface `name`, then the interface if
/// this tool created it and it holds nothing more.
fn remove_addresses(name: &str, addrs: &BTreeSet<IpAddr>, out: &mut Removed) {
    let mut rtnl = match rtnl::Rtnl::open() {
        Ok(r) => r,
        Err(e) => {
            out.failures.push(e.to_string());
            return;
        }
    };
    let link = match rtnl.link(name) {
        Ok(Some(link)) => link,
        Ok(None) => return,
        Err(e) => {
            out.failures.push(e.to_string());
            return;
        }
    };
    if link.kind.as_deref() != Some("dummy") {
        out.kept
            .push(format!("{name} is not a dummy interface: left alone"));
        return;
    }
    // Its addresses but the IPv6 link-local one the kernel gives an
    // interface that is up (`--local-routes` sets it up): not bound by
    // anyone, it goes with the interface.
    let on = match rtnl.addresses() {
        Ok(all) => all
            .into_iter()
            .filter(|a| a.index == link.index)
            .filter(|a| !matches!(a.ip, IpAddr::V6(v6) if v6.is_unicast_link_local()))
            .collect::<Vec<_>>(),
        Err(e) => {
            out.failures.push(e.to_string());
            return;
        }
    };
    // Its local routes of this tool (`--local-routes`) for those
    // addresses; the others are another instance's, or nobody's.
    match rtnl.local_routes() {
        Ok(routes) => {
            let ips: Vec<IpAddr> = routes
                .iter()
                .filter(|r| r.index == link.index && addrs.contains(&r.ip))
                .map(|r| r.ip)
                .collect();
            for (ip, result) in ips.iter().zip(rtnl.delete_local_routes(link.index, &ips)) {
                match result {
                    Ok(()) => out.addresses.push(*ip),
                    Err(e) => out.failures.push(e.to_string()),
                }
            }
        }
        Err(e) => out.failures.push(e.to_string()),
    }
    let mut left = on.len();
    for a in &on {
        if !addrs.contains(&a.ip) {
            continue;
        }
        match rtnl.delete_address(a) {
            Ok(()) => {
                out.addresses.push(a.ip);
                left -= 1;
            }
            Err(e) => out.failures.push(e.to_string()),
        }
    }
    if link.alias.as_deref() == Some(rtnl::CREATED_ALIAS) {
        if left == 0 {
            match rtnl.delete_link(link.index) {
                Ok(()) => out.interface = true,
                Err(e) => out.failures.push(e.to_string()),
            }
        } else {
            out.kept.push(format!(
                "{name}: {left} address(es) ipvsadm-rs did not bind: the interface is left"
            ));
        }
    }
}

/// Runs `--from-k8s --cleanup`: exit 0 when everything this tool created
/// is gone (or there was nothing), 1 when something could not be
/// removed, 2 when the state file cannot be read or is locked by a
/// running instance.
pub fn run(open: impl FnOnce() -> Result<Handle, String>, args: &Args, io: &mut Io) -> i32 {
    let say = |io: &mut Io, msg: &str| {
        let _ = writeln!(io.err, "ipvsadm-rs: --from-k8s --cleanup: {msg}");
    };
    if let Err(msg) = node::check_interface_name(&args.node.interface) {
        say(io, &msg);
        return 2;
    }
    // A running instance holds the namespace's lock, whatever its state
    // file: the cleanup waits for none and refuses.
    let _netns = match crate::ownership::lock_netns(&args.state) {
        Ok(lock) => lock,
        Err(msg) => {
            say(io, &msg);
            return 2;
        }
    };
    let mut state = match StateFile::open(&args.state, true) {
        Ok(s) => s,
        Err(msg) => {
            say(io, &msg);
            return 2;
        }
    };
    let mut out = Removed::default();
    match node::nft::Netfilter::open() {
        Ok(mut nft) => match nft.has_table() {
            Ok(false) => {}
            Ok(true) => match nft.remove_table() {
                Ok(()) => out.table = true,
                Err(e) => out.failures.push(e.to_string()),
            },
            Err(e) => out.failures.push(e.to_string()),
        },
        // Without nf_tables this tool never wrote a table.
        Err(e) => out.kept.push(format!("no packet-path table checked: {e}")),
    }
    // The record of the table's structure (beside the state file) goes
    // with it.
    let _ = std::fs::remove_file(node::nft::PacketPath::record_beside(&args.state));
    let addrs = if state.recorded.is_empty() {
        BTreeSet::new()
    } else {
        match open() {
            Ok(mut handle) => remove_services(&mut handle, &state, &mut out),
            Err(message) => {
                out.failures.push(message.trim_end().to_owned());
                BTreeSet::new()
            }
        }
    };
    remove_addresses(&args.node.interface, &addrs, &mut out);
    let ips: Vec<IpAddr> = addrs.iter().copied().collect();
    match node::conntrack::flush_for_addresses(&ips) {
        Ok(f) => out.conntrack = f.deleted,
        Err(e) => out.failures.push(e.to_string()),
    }
    if out.failures.is_empty() {
        if let Err(msg) = state.record(Default::default()) {
            out.failures.push(msg);
        }
    }
    if out.table {
        say(
            io,
            &format!(
                "removed table {} {}",
                crate::packet::FAMILY,
                crate::packet::TABLE
            ),
        );
    }
    for id in &out.services {
        say(io, &format!("removed virtual service {id}"));
    }
    for ip in &out.addresses {
        say(
            io,
            &format!("removed address {ip} from {}", args.node.interface),
        );
    }
    if out.interface {
        say(io, &format!("removed interface {}", args.node.interface));
    }
    if out.conntrack > 0 {
        say(
            io,
            &format!(
                "deleted {} conntrack entries of those addresses",
                out.conntrack
            ),
        );
    }
    for line in out.kept.iter().chain(&out.failures) {
        say(io, line);
    }
    if out.nothing() && out.failures.is_empty() {
        say(io, "nothing to remove");
    }
    i32::from(!out.failures.is_empty())
}
