//! The node side of `--from-k8s`: what makes traffic reach the table.
//!
//! - [`dummy`]: the dummy interface (`kube-ipvs0`) holding exactly the
//!   virtual addresses kube-proxy binds there (ClusterIPs, external IPs,
//!   load-balancer IPs; never the node addresses of NodePorts);
//! - [`sysctl`]: the sysctls IPVS mode needs, checked, and set with
//!   `--set-sysctls`;
//! - [`kube_proxy`]: refusing to run next to kube-proxy in IPVS mode
//!   unless `--force`;
//! - [`rtnl`]: the small blocking rtnetlink client under [`dummy`];
//! - [`conntrack`]: deleting the conntrack entries of UDP Services that
//!   changed and of UDP endpoints that went, over ctnetlink, as
//!   kube-proxy does.
//!
//! The functions here are the steps a sync takes (the file mode's, the
//! live loop's); they return sentences for the caller to print or log.
//! The file mode ([`super::sync::run`]) takes them in this order, and a
//! long-running caller would too, keeping the [`Dummy`] between syncs:
//! 1. at start, [`kube_proxy_check`] (stop on `Err`);
//! 2. at start, once IPVS is open (its sysctls exist only then),
//!    [`Dummy::ensure`] and [`sysctls`];
//! 3. after each sync's writes, [`wanted_addresses`] of the services the
//!    table has (not the conflicts) and [`Dummy::bind`], logging
//!    [`describe`] of the changes; when the sync left real servers
//!    draining ([`super::sync::SyncPlan::draining`]), another sync soon
//!    removes them once idle.

pub mod conntrack;
pub mod dummy;
pub mod kube_proxy;
pub mod nft;
pub mod rtnl;
pub mod sysctl;
#[cfg(test)]
mod testns;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use ipvs_netlink::ServiceId;

use super::mapping::Mapped;
pub use dummy::{Binding, Changes, Dummy};
use sysctl::Sysctls;

/// kube-proxy's name for the dummy interface, the default of `--interface`.
pub const DEFAULT_INTERFACE: &str = "kube-ipvs0";

/// The node options of `--from-k8s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `--interface NAME`: the dummy interface.
    pub interface: String,
    /// `--set-sysctls`: set the sysctls IPVS needs instead of warning.
    pub set_sysctls: bool,
    /// `--force`: run even when kube-proxy in IPVS mode manages the node.
    pub force: bool,
    /// `--ipvs-strict-arp` (kube-proxy's name): also want
    /// `net.ipv4.conf.all.arp_ignore=1` and `arp_announce=2`, set with
    /// `--set-sysctls` and warned about otherwise, as the others.
    pub strict_arp: bool,
    /// `--local-routes`: how the virtual addresses are made the node's
    /// own ([`Binding`]).
    pub binding: Binding,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            interface: DEFAULT_INTERFACE.to_owned(),
            set_sysctls: false,
            force: false,
            strict_arp: false,
            binding: Binding::Addresses,
        }
    }
}

/// What the node side's pre-flight found: a warning to print (kube-proxy
/// beside it, with `--force`), and the packet path's writer.
#[derive(Debug)]
pub struct Preflight {
    /// A warning for the operator.
    pub warning: Option<String>,
    /// The packet path (`None`: `--no-nftables`, or a dry run).
    pub packet: Option<nft::PacketPath>,
}

/// Every check of the node that can refuse a start, offline or live,
/// made before anything is written (no lock, no state file, no dummy
/// interface, no table): kube-proxy in IPVS mode (without `--force`);
/// an `--interface` that exists and is not a dummy (unless a dry run);
/// nf_tables that does not answer (unless `--no-nftables` or a dry run).
pub fn preflight(args: &crate::Args) -> Result<Preflight, String> {
    let warning = kube_proxy_check(args.node.force, args.dry_run)?;
    if args.dry_run {
        return Ok(Preflight {
            warning,
            packet: None,
        });
    }
    dummy::plan(&args.node.interface, &Default::default())?;
    let packet = if args.packet.disabled {
        None
    } else {
        let nft = nft::Netfilter::for_options(&args.packet).map_err(|e| e.to_string())?;
        Some(
            nft::PacketPath::new(Box::new(nft), args.packet.clone())
                .with_record(nft::PacketPath::record_beside(&args.state)),
        )
    };
    Ok(Preflight { warning, packet })
}

/// What a sync needs of the interface the virtual addresses are bound
/// to: its name, and making it hold exactly a set of addresses.
/// [`Dummy`] is the real one (rtnetlink); tests use [`FakeAddresses`].
pub trait Addresses {
    /// The interface's name.
    fn name(&self) -> &str;
    /// Makes the interface hold exactly `wanted`, but never removes an
    /// address of `keep` (another tool's or instance's); each failed
    /// change is in [`Changes::errors`], `Err` when nothing could be done.
    fn bind_keeping(
        &mut self,
        wanted: &BTreeSet<IpAddr>,
        keep: &BTreeSet<IpAddr>,
    ) -> Result<Changes, String>;
}

impl Addresses for Dummy {
    fn name(&self) -> &str {
        Dummy::name(self)
    }

    fn bind_keeping(
        &mut self,
        wanted: &BTreeSet<IpAddr>,
        keep: &BTreeSet<IpAddr>,
    ) -> Result<Changes, String> {
        Dummy::bind_keeping(self, wanted, keep)
    }
}

/// An interface in memory, for tests: the addresses it holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FakeAddresses {
    /// The addresses bound now.
    pub held: BTreeSet<IpAddr>,
}

impl Addresses for FakeAddresses {
    fn name(&self) -> &str {
        "fake0"
    }

    fn bind_keeping(
        &mut self,
        wanted: &BTreeSet<IpAddr>,
        keep: &BTreeSet<IpAddr>,
    ) -> Result<Changes, String> {
        let changes = Changes {
            added: wanted.difference(&self.held).copied().collect(),
            removed: self
                .held
                .difference(wanted)
                .filter(|a| !keep.contains(a))
                .copied()
                .collect(),
            ..Changes::default()
        };
        self.held.retain(|a| wanted.contains(a) || keep.contains(a));
        self.held.extend(wanted.iter().copied());
        Ok(changes)
    }
}

/// Checks an interface name as the kernel would take it.
pub fn check_interface_name(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if bad {
        return Err(format!(
            "--interface {name:?}: not an interface name (1 to 15 characters, no '/', ':' or spaces)"
        ));
    }
    Ok(())
}

/// The addresses to bind to the dummy interface: those of the desired
/// virtual services that kube-proxy binds, of the services `keep` accepts
/// (say, not the conflicts another tool's service holds, nor services
/// whose creation failed).
pub fn wanted_addresses(mapped: &Mapped, keep: impl Fn(&ServiceId) -> bool) -> BTreeSet<IpAddr> {
    mapped
        .desired
        .iter()
        .filter(|d| d.bound && keep(&d.server.service.id))
        .filter_map(|d| match d.server.service.id {
            ServiceId::Inet { addr, .. } => Some(addr),
            ServiceId::Fwmark { .. } => None,
        })
        .collect()
}

/// The kube-proxy check before any write: `Err` (the reason and what to
/// do) when kube-proxy in IPVS mode manages this network namespace and
/// `force` is not set; with `force` (or in a dry run, which writes
/// nothing), `Ok` with a warning to print.
pub fn kube_proxy_check(force: bool, dry_run: bool) -> Result<Option<String>, String> {
    let metrics: SocketAddr = match kube_proxy::METRICS.parse() {
        Ok(a) => a,
        Err(_) => return Ok(None),
    };
    let found = kube_proxy::detect(metrics, Path::new("/proc"));
    match found.refusal() {
        None => Ok(None),
        Some(reason) if dry_run => Ok(Some(format!(
            "warning: {reason}; without --force a real run would refuse to start"
        ))),
        Some(reason) if force => Ok(Some(format!(
            "warning: {reason}; going on because of --force: the two will undo each other's changes"
        ))),
        Some(reason) => Err(format!(
            "{reason}: two reconcilers would fight over the IPVS table. Stop it or move it to another mode, or pass --force"
        )),
    }
}

/// What the sysctl check said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SysctlReport {
    /// Sentences to print: warnings, and what was (or would be) set.
    pub notes: Vec<String>,
    /// A sysctl could not be set.
    pub failed: bool,
}

/// Checks the sysctls IPVS needs; with `set`, sets the wrong ones (in a
/// dry run, says what it would set).
pub fn sysctls(sysctls: &Sysctls, set: bool, dry_run: bool) -> SysctlReport {
    let mut report = SysctlReport::default();
    for m in sysctls.check() {
        let (name, value, by) = (m.wanted.name, m.wanted.value, m.wanted.by);
        let have = match &m.have {
            Ok(v) => v.clone(),
            Err(e) => {
                report.notes.push(format!("warning: {name}: {e}"));
                continue;
            }
        };
        if !set {
            report.notes.push(format!(
                "warning: {name} is {have}; {by} wants {value} (--set-sysctls sets it)"
            ));
        } else if dry_run {
            report
                .notes
                .push(format!("would set {name} to {value} (it is {have})"));
        } else {
            match sysctls.write(name, value) {
                Ok(()) => report
                    .notes
                    .push(format!("set {name} to {value} (it was {have})")),
                Err(e) => {
                    report.failed = true;
                    report
                        .notes
                        .push(format!("cannot set {name} to {value} (it is {have}): {e}"));
                }
            }
        }
    }
    report
}

/// Step 2 of the order above, once IPVS is open: the dummy interface
/// (`None` in a dry run, which creates nothing; `Err` when one of that
/// name is not a dummy, before anything is written) and the sysctls
/// (with `route_localnet` when `localhost_nodeports`,
/// `--localhost-nodeports`).
pub fn prepare(
    opts: &Options,
    dry_run: bool,
    localhost_nodeports: bool,
) -> Result<(Option<Dummy>, SysctlReport), String> {
    let dummy = if dry_run {
        None
    } else {
        Some(Dummy::ensure(&opts.interface)?.with_binding(opts.binding))
    };
    Ok((
        dummy,
        sysctls(
            &Sysctls::default()
                .with_strict_arp(opts.strict_arp)
                .with_localhost_nodeports(localhost_nodeports),
            opts.set_sysctls,
            dry_run,
        ),
    ))
}

/// Sentences for what a bind changed (`planned`: would change).
pub fn describe(changes: &Changes, interface: &str, planned: bool) -> Vec<String> {
    let (create, bind, remove) = if planned {
        ("would create", "would bind", "would remove")
    } else {
        ("created", "bound", "removed")
    };
    let mut out = Vec::new();
    if changes.created {
        out.push(format!("{create} dummy interface {interface}"));
    }
    for ip in &changes.added {
        out.push(format!("{bind} {ip} to {interface}"));
    }
    for ip in &changes.removed {
        out.push(format!("{remove} {ip} from {interface}"));
    }
    out.extend(changes.errors.iter().cloned());
    out
}

/// Binds `wanted` to the interface of `opts` (creating it if missing):
/// [`Dummy::ensure`] then [`Dummy::bind`]. For a long-running caller,
/// keep the [`Dummy`] instead.
pub fn bind(opts: &Options, wanted: &BTreeSet<IpAddr>) -> Result<Changes, String> {
    Dummy::ensure(&opts.interface)?
        .with_binding(opts.binding)
        .bind(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_addresses_are_every_virtual_address_but_the_nodes() {
        use crate::mapping::{map, read_objects, Node};
        let text = include_str!("../../tests/dumps/types.json");
        let node = Node {
            ips: vec!["192.168.49.2".parse().unwrap()],
            name: Some("node-a".to_owned()),
            zone: None,
            scheduler: "rr".to_owned(),
        };
        let mapped = map(&read_objects(text).unwrap(), &node);
        let all: Vec<String> = wanted_addresses(&mapped, |_| true)
            .iter()
            .map(|ip| ip.to_string())
            .collect();
        // ClusterIPs, the external IP, the load-balancer IPs; not the node
        // address of the NodePorts.
        assert_eq!(
            all,
            [
                "10.96.0.1",
                "10.96.0.10",
                "10.96.10.10",
                "10.96.20.20",
                "10.96.21.21",
                "10.96.22.22",
                "198.51.100.10",
                "198.51.100.12",
                "203.0.113.7",
            ]
        );
        // A conflict's address is not bound; another port of it would be.
        let lb: ServiceId = ServiceId::tcp("198.51.100.12:80".parse().unwrap());
        assert!(
            !wanted_addresses(&mapped, |id| *id != lb).contains(&"198.51.100.12".parse().unwrap())
        );
        let dns = ServiceId::inet(
            ipvs_netlink::Protocol::Udp,
            "10.96.0.10:53".parse().unwrap(),
        );
        assert!(wanted_addresses(&mapped, |id| *id != dns).contains(&"10.96.0.10".parse().unwrap()));
    }

    #[test]
    fn interface_names() {
        for good in ["kube-ipvs0", "ipvs0", "a", "abcdefghijklmno"] {
            assert_eq!(check_interface_name(good), Ok(()), "{good}");
        }
        for bad in ["", "abcdefghijklmnop", "a/b", "a:1", "a b", ".", ".."] {
            assert!(check_interface_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sysctl_sentences() {
        let root = std::env::temp_dir().join(format!("ipvsadm-rs-sysnotes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("net/ipv4/vs")).unwrap();
        let s = Sysctls::at(&root);
        for (n, v) in [
            ("net.ipv4.vs.conntrack", "0"),
            ("net.ipv4.vs.expire_nodest_conn", "0"),
            ("net.ipv4.vs.expire_quiescent_template", "1"),
            ("net.ipv4.ip_forward", "1"),
        ] {
            s.write(n, v).unwrap();
        }
        let warned = sysctls(&s, false, false);
        assert_eq!(
            warned.notes,
            vec![
                "warning: net.ipv4.vs.conntrack is 0; IPVS mode wants 1 (--set-sysctls sets it)",
                "warning: net.ipv4.vs.expire_nodest_conn is 0; IPVS mode wants 1 (--set-sysctls sets it)",
            ]
        );
        let dry = sysctls(&s, true, true);
        assert_eq!(
            dry.notes[0],
            "would set net.ipv4.vs.conntrack to 1 (it is 0)"
        );
        assert_eq!(s.read("net.ipv4.vs.conntrack").unwrap(), "0");
        let set = sysctls(&s, true, false);
        assert_eq!(
            set.notes,
            vec![
                "set net.ipv4.vs.conntrack to 1 (it was 0)",
                "set net.ipv4.vs.expire_nodest_conn to 1 (it was 0)",
            ]
        );
        assert!(!set.failed);
        assert_eq!(sysctls(&s, true, false), SysctlReport::default());
        // Strict ARP: its two sysctls, warned about by its flag's name,
        // then set; without the flag they are left alone.
        std::fs::create_dir_all(root.join("net/ipv4/conf/all")).unwrap();
        s.write("net.ipv4.conf.all.arp_ignore", "0").unwrap();
        s.write("net.ipv4.conf.all.arp_announce", "0").unwrap();
        assert_eq!(sysctls(&s, false, false), SysctlReport::default());
        let arp = s.clone().with_strict_arp(true);
        assert_eq!(
            sysctls(&arp, false, false).notes,
            vec![
                "warning: net.ipv4.conf.all.arp_ignore is 0; --ipvs-strict-arp wants 1 (--set-sysctls sets it)",
                "warning: net.ipv4.conf.all.arp_announce is 0; --ipvs-strict-arp wants 2 (--set-sysctls sets it)",
            ]
        );
        assert_eq!(
            sysctls(&arp, true, false).notes,
            vec![
                "set net.ipv4.conf.all.arp_ignore to 1 (it was 0)",
                "set net.ipv4.conf.all.arp_announce to 2 (it was 0)",
            ]
        );
        assert_eq!(s.read("net.ipv4.conf.all.arp_announce").unwrap(), "2");
        assert_eq!(sysctls(&arp, true, false), SysctlReport::default());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn change_sentences() {
        let c = Changes {
            created: true,
            added: vec!["10.96.0.1".parse().unwrap()],
            removed: vec!["fd00::9".parse().unwrap()],
            elsewhere: vec![],
            errors: vec!["cannot bind 10.96.0.2 to kube-ipvs0: Permission denied".into()],
        };
        assert_eq!(
            describe(&c, "kube-ipvs0", true),
            vec![
                "would create dummy interface kube-ipvs0",
                "would bind 10.96.0.1 to kube-ipvs0",
                "would remove fd00::9 from kube-ipvs0",
                "cannot bind 10.96.0.2 to kube-ipvs0: Permission denied",
            ]
        );
        assert_eq!(describe(&c, "x", false)[1], "bound 10.96.0.1 to x");
    }
}
