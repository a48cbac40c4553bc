//! Kubernetes Services to IPVS, as kube-proxy's IPVS mode maps them, but
//! touching only the virtual services it created: the library behind
//! `ipvsadm-rs --from-k8s`.
//!
//! - [`model`]: what the node serves, as neither IPVS nor nftables sees it;
//! - [`mapping`]: API objects to the model, and the model to the desired
//!   IPVS table (pure);
//! - [`packet`]: the model to the packet path's nftables elements (pure);
//! - [`ownership`]: the state file of what it created;
//! - [`adopt`]: `--adopt`, taking over services that are exactly what the
//!   mapping writes (a migration, a lost state file);
//! - [`cleanup`]: `--cleanup`, everything it created removed;
//! - [`sync`]: one sync (read, map, plan, record, write);
//! - [`graceful`]: kube-proxy's graceful termination of TCP real servers;
//! - [`node`]: the dummy interface, the sysctls, the nftables writer, the
//!   kube-proxy check;
//! - [`live`]: the live mode, syncing from a cluster's watches;
//! - [`pace`]: when the live mode syncs (debounce, resync, retry), pure;
//! - [`serve`]: the one HTTP server (hyper), of the live mode's health
//!   endpoints and of `ipvsadm-rs --metrics` (feature `serve`).
//!
//! The live mode needs the cargo feature `live` (kube, tokio, rustls); the
//! rest (reading a `kubectl get -o json` dump, mapping, planning, the node
//! side) builds without an async runtime.

#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod adopt;
#[cfg(feature = "live")]
pub mod api;
pub mod cleanup;
pub mod graceful;
#[cfg(feature = "live")]
pub mod live;
#[cfg(feature = "live")]
pub mod log;
pub mod mapping;
pub mod model;
pub mod node;
pub mod ownership;
pub mod pace;
pub mod packet;
#[cfg(feature = "serve")]
pub mod serve;
pub mod sync;

use std::borrow::Cow;
use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// `text` with its control characters (C0, DEL, C1) escaped as Rust
/// writes them (`\n`, `\r`, `\t`, `\u{1b}`), so that a field taken from
/// an object (a name, a namespace, a port name) can never end a log line
/// and forge the next one (issue 34), nor move the terminal's cursor.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Where a sync reads a dump from (`-`) and writes its plan and its
/// messages: the standard streams, or buffers in tests.
pub struct Io<'a> {
    /// Standard input (a dump given as `-`).
    pub input: &'a mut dyn BufRead,
    /// Standard output (the plan of a dry run).
    pub out: &'a mut dyn Write,
    /// Standard error (warnings, conflicts, failed writes).
    pub err: &'a mut dyn Write,
}

/// The default period of full resyncs in live mode (kube-proxy's IPVS
/// `--ipvs-sync-period`).
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(30);

/// The options of one `--from-k8s` run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The dump to read (`-`: standard input). `None`: the live mode,
    /// which talks to a cluster.
    pub source: Option<String>,
    /// Print the plan as restore lines instead of writing it.
    pub dry_run: bool,
    /// `--node-ip`, in the order given (empty: the node's own addresses).
    pub node_ips: Vec<IpAddr>,
    /// `--node-name` (default: the host name, lower-cased, as kube-proxy).
    pub node_name: Option<String>,
    /// `--node-zone`: the node's zone, for topology hints (`None`: no
    /// zone hint is for this node).
    pub node_zone: Option<String>,
    /// `-s`/`--scheduler`.
    pub scheduler: String,
    /// `--state`.
    pub state: PathBuf,
    /// `--interface`, `--set-sysctls`, `--force`.
    pub node: node::Options,
    /// `--cluster-cidr`, `--masquerade-all`, `--no-nftables`.
    pub packet: packet::Options,
    /// `--nodeport-addresses` (`None`: every node address).
    pub nodeport_addresses: Option<NodePortAddresses>,
    /// `--cleanup`: remove everything this tool created, then exit.
    pub cleanup: bool,
    /// `--adopt`: the first sync takes over the virtual services that are
    /// exactly what the mapping writes ([`adopt`]).
    pub adopt: bool,
    /// The options of the live mode alone.
    pub live: LiveArgs,
}

/// The options of the live mode (`--from-k8s` without FILE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveArgs {
    /// `--kubeconfig PATH` (default: as kubectl finds it).
    pub kubeconfig: Option<PathBuf>,
    /// `--context NAME` (default: the kubeconfig's current context).
    pub context: Option<String>,
    /// `--resync SECONDS`: the period of full resyncs.
    pub resync: Duration,
    /// `--once`: one full sync, then exit with its status.
    pub once: bool,
    /// `--verbose`: debug logging.
    pub verbose: bool,
    /// `--healthz ADDR:PORT`: where to serve the health endpoint.
    pub healthz: Option<SocketAddr>,
    /// `--metrics-bind-address ADDR:PORT`: where to serve the proxy's own
    /// metrics (kube-proxy's flag; off by default).
    pub metrics_bind: Option<SocketAddr>,
}

impl Default for LiveArgs {
    fn default() -> Self {
        LiveArgs {
            kubeconfig: None,
            context: None,
            resync: DEFAULT_RESYNC,
            once: false,
            verbose: false,
            healthz: None,
            metrics_bind: None,
        }
    }
}

/// `--nodeport-addresses`: which node addresses serve NodePorts
/// (kube-proxy's flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePortAddresses {
    /// `primary`: the node's primary addresses (`--node-ip`, else the
    /// source address of each family's default route).
    Primary,
    /// The node addresses within these ranges.
    Cidrs(Vec<model::Cidr>),
}

/// The node's addresses for NodePorts, the same in both modes (the dump
/// and the live watch): `--node-ip` when given, else the
/// [`local_addresses`] of every interface but the dummy one of
/// `--interface` (whose addresses are ClusterIPs, never node addresses);
/// of those, the ones `--nodeport-addresses` selects.
pub fn node_ips(args: &Args) -> Result<Vec<IpAddr>, String> {
    let all = if args.node_ips.is_empty() {
        local_addresses(&args.node.interface)?
    } else {
        args.node_ips.clone()
    };
    Ok(match &args.nodeport_addresses {
        None => all,
        Some(NodePortAddresses::Cidrs(cidrs)) => all
            .into_iter()
            .filter(|ip| cidrs.iter().any(|c| c.contains(ip)))
            .collect(),
        Some(NodePortAddresses::Primary) if !args.node_ips.is_empty() => all,
        Some(NodePortAddresses::Primary) => {
            let primary = default_route_sources();
            all.into_iter().filter(|ip| primary.contains(ip)).collect()
        }
    })
}

/// The source address the kernel picks for each family's default route
/// (a UDP socket connected to a public address: a route lookup, no
/// packet sent); a family without a default route has none.
pub fn default_route_sources() -> Vec<IpAddr> {
    let mut out = Vec::new();
    for (bind, far) in [("0.0.0.0:0", "192.0.2.1:9"), ("[::]:0", "[2001:db8::1]:9")] {
        let Ok(sock) = std::net::UdpSocket::bind(bind) else {
            continue;
        };
        if sock.connect(far).is_ok() {
            if let Ok(local) = sock.local_addr() {
                out.push(local.ip());
            }
        }
    }
    out
}

/// The node's own addresses, as kube-proxy takes them for NodePorts:
/// every address of every interface but loopback, link-local ones and
/// those on `exclude_iface` (the dummy interface virtual addresses are
/// bound to).
pub fn local_addresses(exclude_iface: &str) -> Result<Vec<IpAddr>, String> {
    let addrs = nix::ifaddrs::getifaddrs()
        .map_err(|e| format!("cannot list the node's addresses (getifaddrs): {e}"))?;
    let mut out: Vec<IpAddr> = Vec::new();
    for a in addrs {
        if a.interface_name == exclude_iface {
            continue;
        }
        let Some(sa) = a.address else { continue };
        let ip = if let Some(v4) = sa.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = sa.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if usable_node_ip(&ip) && !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

/// Whether a local address serves NodePorts: not loopback, not
/// link-local, not unspecified.
pub fn usable_node_ip(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unicast_link_local() && !v6.is_unspecified(),
    }
}

/// The host name, lower-cased and trimmed, as kube-proxy's default node name.
pub fn host_name() -> Option<String> {
    let name = nix::unistd::gethostname().ok()?;
    let name = name.to_string_lossy().trim().to_lowercase();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_leave_out_loopback_and_link_local() {
        for bad in ["127.0.0.1", "::1", "169.254.3.4", "fe80::1", "0.0.0.0"] {
            assert!(!usable_node_ip(&bad.parse().unwrap()), "{bad}");
        }
        for good in ["192.168.49.2", "10.0.0.4", "fd00::2", "2001:db8::7"] {
            assert!(usable_node_ip(&good.parse().unwrap()), "{good}");
        }
    }

    /// The addresses the kernel itself lists as local, from /proc: IPv4
    /// from the local routing table (`/32 host LOCAL` entries of
    /// /proc/net/fib_trie), IPv6 of global scope from /proc/net/if_inet6.
    fn kernel_local_addresses() -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        let trie = std::fs::read_to_string("/proc/net/fib_trie").unwrap();
        let lines: Vec<&str> = trie.lines().collect();
        for pair in lines.windows(2) {
            if pair[1].trim() == "/32 host LOCAL" {
                let ip: IpAddr = pair[0].trim().trim_start_matches("|-- ").parse().unwrap();
                // kube-proxy serves NodePorts on neither loopback nor
                // link-local (169.254/16) addresses.
                let link_local = matches!(ip, IpAddr::V4(v4) if v4.is_link_local());
                if !ip.is_loopback() && !link_local && !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
        let inet6 = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
        for line in inet6.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Scope 00 is global; 10 host (loopback), 20 link.
            if f.len() == 6 && f[3] == "00" {
                let bits = u128::from_str_radix(f[0], 16).unwrap();
                out.push(IpAddr::V6(std::net::Ipv6Addr::from(bits)));
            }
        }
        out.sort();
        out
    }

    pub(crate) fn args_with(interface: &str, node_ips: Vec<IpAddr>) -> Args {
        Args {
            source: None,
            dry_run: false,
            node_ips,
            node_name: None,
            node_zone: None,
            scheduler: "rr".into(),
            state: "/nonexistent".into(),
            node: node::Options {
                interface: interface.into(),
                ..node::Options::default()
            },
            packet: packet::Options::default(),
            nodeport_addresses: None,
            cleanup: false,
            adopt: false,
            live: LiveArgs::default(),
        }
    }

    /// Issue 22, bug 3: `--interface` names the dummy interface whose
    /// addresses are no node addresses, in both modes (the live mode
    /// left out the default `kube-ipvs0` whatever `--interface` said).
    #[test]
    fn node_ips_leave_out_the_interface_of_interface_and_take_node_ip_first() {
        let kernel = kernel_local_addresses();
        // Each interface's addresses, from getifaddrs.
        let mut on: Vec<(String, IpAddr)> = Vec::new();
        for a in nix::ifaddrs::getifaddrs().unwrap() {
            let Some(sa) = a.address else { continue };
            let ip = match (sa.as_sockaddr_in(), sa.as_sockaddr_in6()) {
                (Some(v4), _) => IpAddr::V4(v4.ip()),
                (_, Some(v6)) => IpAddr::V6(v6.ip()),
                _ => continue,
            };
            on.push((a.interface_name.clone(), ip));
        }
        let mut checked = 0;
        for (iface, ip) in &on {
            if !kernel.contains(ip) {
                continue;
            }
            let ips = node_ips(&args_with(iface, Vec::new())).unwrap();
            for k in &kernel {
                let excluded = on.iter().any(|(i, a)| i == iface && a == k);
                assert_eq!(ips.contains(k), !excluded, "{k} with --interface {iface}");
            }
            checked += 1;
        }
        assert!(checked > 0 || kernel.is_empty(), "no address to check");
        // `--node-ip` wins, whatever the interfaces hold.
        let given = vec!["192.0.2.7".parse().unwrap()];
        assert_eq!(node_ips(&args_with("lo", given.clone())).unwrap(), given);
    }

    #[test]
    fn node_addresses_are_the_kernels_local_ones() {
        let mut mine = local_addresses("kube-ipvs0").unwrap();
        mine.sort();
        assert_eq!(mine, kernel_local_addresses());
        // An excluded interface's addresses are left out: exclude each
        // interface that has one of them in turn.
        let addrs = nix::ifaddrs::getifaddrs().unwrap();
        for a in addrs {
            let Some(ip) = a
                .address
                .and_then(|sa| sa.as_sockaddr_in().map(|v4| IpAddr::V4(v4.ip())))
            else {
                continue;
            };
            if mine.contains(&ip) {
                let without = local_addresses(&a.interface_name).unwrap();
                assert!(!without.contains(&ip), "{ip} of {}", a.interface_name);
            }
        }
    }
}
