//! The `--from-k8s` command line: `--from-k8s FILE` (or `--from-k8s=FILE`,
//! `-` for stdin) first, then its options in any order. Without FILE it is
//! the live mode. It builds the [`ipvs_k8s::Args`] the sync runs with.
//! Its options are the one option table's section [`Section::FromK8s`]:
//! the spellings, and whether an option takes a value, are read there.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipvs_k8s::model::Cidr;
use ipvs_k8s::{node, ownership, packet, Args, LiveArgs, NodePortAddresses};

use super::options::{find, is_long, Opt, Section};
use super::popt::ArgKind;

/// The `--from-k8s` command line, if `args` starts with it.
pub fn parse(args: &[String]) -> Option<Result<Args, String>> {
    let first = args.first()?;
    let inline = match first.split_once('=') {
        Some((name, v)) if is_long(name, Opt::FromK8s) => Some(v.to_owned()),
        None if is_long(first, Opt::FromK8s) => None,
        _ => return None,
    };
    Some(parse_rest(inline, &args[1..]))
}

/// `unexpected argument WORD for --from-k8s`.
fn unexpected(word: &str) -> String {
    format!("unexpected argument {word} for --from-k8s")
}

fn parse_rest(inline: Option<String>, rest: &[String]) -> Result<Args, String> {
    let mut words = rest.iter().peekable();
    let source = match inline {
        Some(f) if f.is_empty() => return Err("--from-k8s=: an empty file name".to_owned()),
        Some(f) => Some(f),
        None => match words.peek() {
            Some(w) if *w == "-" || !w.starts_with('-') => words.next().cloned(),
            _ => None,
        },
    };
    let mut out = Args {
        source,
        dry_run: false,
        node_ips: Vec::new(),
        node_name: None,
        node_zone: None,
        scheduler: "rr".to_owned(),
        state: PathBuf::from(ownership::DEFAULT_STATE),
        node: node::Options::default(),
        packet: packet::Options::default(),
        nodeport_addresses: None,
        cleanup: false,
        adopt: false,
        live: LiveArgs::default(),
    };
    let mut live_only: Option<&'static str> = None;
    while let Some(word) = words.next() {
        let (opt, inline) = match word.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o, Some(v.to_owned())),
            _ => (word.as_str(), None),
        };
        let spec = match find(Section::FromK8s, opt) {
            Some(spec) if spec.arg != ArgKind::None || inline.is_none() => spec,
            _ => return Err(unexpected(opt)),
        };
        let mut value = || -> Result<String, String> {
            match inline.clone().or_else(|| words.next().cloned()) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(format!("{opt} needs a value")),
            }
        };
        match spec.opt {
            Opt::DryRun => out.dry_run = true,
            Opt::NodeIp => {
                let text = value()?;
                let ip: IpAddr = text
                    .parse()
                    .map_err(|_| format!("{opt} {text}: not an IP address"))?;
                if !out.node_ips.contains(&ip) {
                    out.node_ips.push(ip);
                }
            }
            Opt::NodeName => out.node_name = Some(value()?),
            Opt::NodeZone => out.node_zone = Some(value()?),
            Opt::K8sScheduler => out.scheduler = value()?,
            Opt::State => out.state = PathBuf::from(value()?),
            Opt::Interface => {
                out.node.interface = value()?;
                node::check_interface_name(&out.node.interface)?;
            }
            Opt::SetSysctls => out.node.set_sysctls = true,
            Opt::Force => out.node.force = true,
            Opt::Kubeconfig => out.live.kubeconfig = Some(PathBuf::from(value()?)),
            Opt::Context => out.live.context = Some(value()?),
            Opt::Resync => {
                let text = value()?;
                let secs: u64 = text
                    .parse()
                    .ok()
                    .filter(|s| (1..=86_400).contains(s))
                    .ok_or_else(|| {
                        format!("{opt} {text}: not a whole number of seconds from 1 to 86400")
                    })?;
                out.live.resync = Duration::from_secs(secs);
            }
            Opt::Once => out.live.once = true,
            Opt::Verbose => out.live.verbose = true,
            Opt::Healthz => {
                let text = value()?;
                let addr: SocketAddr = text
                    .parse()
                    .map_err(|_| format!("{opt} {text}: not ADDR:PORT (e.g. 127.0.0.1:10256)"))?;
                out.live.healthz = Some(addr);
            }
            Opt::MetricsBindAddress => {
                let text = value()?;
                let addr: SocketAddr = text
                    .parse()
                    .map_err(|_| format!("{opt} {text}: not ADDR:PORT (e.g. 127.0.0.1:10249)"))?;
                out.live.metrics_bind = Some(addr);
            }
            Opt::ClusterCidr => {
                for cidr in cidrs(opt, &value()?)? {
                    if !out.packet.cluster_cidrs.contains(&cidr) {
                        out.packet.cluster_cidrs.push(cidr);
                    }
                }
            }
            Opt::MasqueradeAll => out.packet.masquerade_all = true,
            Opt::FwmarkRange => {
                let text = value()?;
                out.packet.fwmarks = text.parse().map_err(|e| format!("{opt}: {e}"))?;
            }
            Opt::NodeportAddresses => {
                let text = value()?;
                out.nodeport_addresses = Some(if text == "primary" {
                    NodePortAddresses::Primary
                } else {
                    NodePortAddresses::Cidrs(cidrs(opt, &text)?)
                });
            }
            Opt::NoNftables => out.packet.disabled = true,
            Opt::Cleanup => out.cleanup = true,
            Opt::Adopt => out.adopt = true,
            Opt::IpvsStrictArp => out.node.strict_arp = true,
            Opt::LocalRoutes => out.node.binding = node::Binding::LocalRoutes,
            Opt::LocalhostNodeports => out.packet.localhost_nodeports = true,
            // An entry of the table's section this parser has no use for.
            _ => return Err(unexpected(opt)),
        }
        if LIVE_ONLY.contains(&spec.opt) {
            live_only = Some(spec.long);
        }
    }
    localhost_nodeports_check(&out)?;
    if let (Some(source), Some(opt)) = (&out.source, live_only) {
        return Err(format!(
            "--{opt} is an option of the live mode (--from-k8s without a file), not of --from-k8s {source}"
        ));
    }
    Ok(out)
}

/// `--localhost-nodeports` needs the packet path (its DNAT and drop
/// rule are nftables) and, as kube-proxy's iptables mode, a
/// `--nodeport-addresses` that holds 127.0.0.1 (none given: all
/// addresses, so it does); kube-proxy then quietly serves no localhost
/// NodePort, we refuse the contradiction.
fn localhost_nodeports_check(args: &Args) -> Result<(), String> {
    if !args.packet.localhost_nodeports {
        return Ok(());
    }
    if args.packet.disabled {
        return Err(
            "--localhost-nodeports needs the packet path's rules: not with --no-nftables"
                .to_owned(),
        );
    }
    let loopback = IpAddr::V4(packet::LOCALHOST);
    match &args.nodeport_addresses {
        None => Ok(()),
        Some(NodePortAddresses::Cidrs(c)) if c.iter().any(|c| c.contains(&loopback)) => Ok(()),
        Some(_) => Err(
            "--localhost-nodeports: --nodeport-addresses holds no 127.0.0.1, so no NodePort is served on localhost (add 127.0.0.0/8 to it, or leave --localhost-nodeports out)"
                .to_owned(),
        ),
    }
}

/// A comma-separated list of CIDRs, as kube-proxy reads `--cluster-cidr`.
fn cidrs(opt: &str, text: &str) -> Result<Vec<Cidr>, String> {
    text.split(',')
        .map(|t| {
            t.parse::<Cidr>()
                .map_err(|_| format!("{opt} {text}: {t:?} is not a CIDR (such as 10.244.0.0/16)"))
        })
        .collect()
}

/// The options of the live mode alone (`--from-k8s` without a file).
const LIVE_ONLY: &[Opt] = &[
    Opt::Kubeconfig,
    Opt::Context,
    Opt::Resync,
    Opt::Once,
    Opt::Verbose,
    Opt::Healthz,
    Opt::MetricsBindAddress,
];

#[cfg(test)]
mod tests {
    use super::*;
    use ipvs_k8s::DEFAULT_RESYNC;

    fn p(v: &[&str]) -> Option<Result<Args, String>> {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn command_lines() {
        assert_eq!(p(&["-Ln"]), None);
        assert_eq!(p(&["--from-k8sx"]), None);
        let a = p(&["--from-k8s", "-", "--dry-run"]).unwrap().unwrap();
        assert_eq!(a.source.as_deref(), Some("-"));
        assert!(a.dry_run);
        assert_eq!(a.scheduler, "rr");
        assert_eq!(a.state, PathBuf::from(ownership::DEFAULT_STATE));
        assert_eq!(a.node, node::Options::default());
        assert_eq!(a.node.interface, "kube-ipvs0");
        let a = p(&[
            "--from-k8s=dump.json",
            "--node-ip",
            "192.168.49.2",
            "--node-ip=fd00::2",
            "--node-ip",
            "192.168.49.2",
            "--node-name",
            "node-a",
            "--node-zone=zone-a",
            "-s",
            "wlc",
            "--state=/tmp/owned",
            "--interface",
            "ipvs1",
            "--set-sysctls",
            "--force",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.source.as_deref(), Some("dump.json"));
        assert_eq!(
            a.node_ips,
            vec![
                "192.168.49.2".parse::<IpAddr>().unwrap(),
                "fd00::2".parse().unwrap()
            ]
        );
        assert_eq!(a.node_name.as_deref(), Some("node-a"));
        assert_eq!(a.node_zone.as_deref(), Some("zone-a"));
        assert_eq!(a.scheduler, "wlc");
        assert_eq!(a.state, PathBuf::from("/tmp/owned"));
        assert_eq!(
            a.node,
            node::Options {
                interface: "ipvs1".into(),
                set_sysctls: true,
                force: true,
                strict_arp: false,
                binding: node::Binding::Addresses,
            }
        );
        // --localhost-nodeports: off by default, a flag without a value.
        assert!(!a.packet.localhost_nodeports);
        let lh = p(&["--from-k8s", "--localhost-nodeports"])
            .unwrap()
            .unwrap();
        assert!(lh.packet.localhost_nodeports);
        let lh = p(&[
            "--from-k8s",
            "-",
            "--localhost-nodeports",
            "--nodeport-addresses=192.168.1.0/24,127.0.0.0/8",
        ])
        .unwrap()
        .unwrap();
        assert!(lh.packet.localhost_nodeports);
        // --local-routes: routes in place of addresses; off by default.
        let routed = p(&["--from-k8s", "-", "--local-routes"]).unwrap().unwrap();
        assert_eq!(routed.node.binding, node::Binding::LocalRoutes);
        // No file: the live mode's command line.
        assert_eq!(
            p(&["--from-k8s", "--dry-run"]).unwrap().unwrap().source,
            None
        );
        // --adopt, in both modes; off by default.
        assert!(!a.adopt);
        assert!(p(&["--from-k8s", "-", "--adopt"]).unwrap().unwrap().adopt);
        assert!(p(&["--from-k8s", "--adopt"]).unwrap().unwrap().adopt);
        assert_eq!(
            p(&["--from-k8s", "--adopt=yes"]).unwrap().unwrap_err(),
            "unexpected argument --adopt for --from-k8s"
        );
    }

    #[test]
    fn fwmark_ranges() {
        use ipvs_k8s::mapping::FwmarkRange;
        let a = p(&["--from-k8s", "-"]).unwrap().unwrap();
        assert_eq!(a.packet.fwmarks, FwmarkRange::default());
        let a = p(&["--from-k8s", "--fwmark-range", "0x20000-0x2ffff"])
            .unwrap()
            .unwrap();
        assert_eq!(
            a.packet.fwmarks,
            FwmarkRange {
                first: 0x20000,
                last: 0x2ffff
            }
        );
        let err = p(&["--from-k8s", "--fwmark-range=0-5"])
            .unwrap()
            .unwrap_err();
        assert!(
            err.starts_with("--fwmark-range: \"0-5\" is not a range"),
            "{err}"
        );
        let err = p(&["--from-k8s", "--fwmark-range", "0x4000-0x4001"])
            .unwrap()
            .unwrap_err();
        assert!(err.contains("masquerade bit 0x4000"), "{err}");
    }

    #[test]
    fn live_command_lines() {
        let a = p(&[
            "--from-k8s",
            "--kubeconfig",
            "/etc/kube.conf",
            "--context=prod",
            "--resync",
            "60",
            "--once",
            "--verbose",
            "--healthz",
            "127.0.0.1:10256",
            "--metrics-bind-address=127.0.0.1:10249",
            "--dry-run",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.source, None);
        assert!(a.dry_run);
        assert_eq!(
            a.live,
            LiveArgs {
                kubeconfig: Some(PathBuf::from("/etc/kube.conf")),
                context: Some("prod".to_owned()),
                resync: Duration::from_secs(60),
                once: true,
                verbose: true,
                healthz: Some("127.0.0.1:10256".parse().unwrap()),
                metrics_bind: Some("127.0.0.1:10249".parse().unwrap()),
            }
        );
        let a = p(&["--from-k8s"]).unwrap().unwrap();
        assert_eq!(a.live, LiveArgs::default());
        assert_eq!(a.live.resync, DEFAULT_RESYNC);
        let err = |v: &[&str]| p(v).unwrap().unwrap_err();
        assert_eq!(
            err(&["--from-k8s", "--resync", "0"]),
            "--resync 0: not a whole number of seconds from 1 to 86400"
        );
        assert_eq!(
            err(&["--from-k8s", "--resync=1.5"]),
            "--resync 1.5: not a whole number of seconds from 1 to 86400"
        );
        assert_eq!(
            err(&["--from-k8s", "--healthz", "10256"]),
            "--healthz 10256: not ADDR:PORT (e.g. 127.0.0.1:10256)"
        );
        assert_eq!(
            err(&["--from-k8s", "--metrics-bind-address", "10249"]),
            "--metrics-bind-address 10249: not ADDR:PORT (e.g. 127.0.0.1:10249)"
        );
        assert_eq!(err(&["--from-k8s", "--context"]), "--context needs a value");
        assert_eq!(
            err(&["--from-k8s", "--once=yes"]),
            "unexpected argument --once for --from-k8s"
        );
        assert_eq!(
            err(&["--from-k8s", "dump.json", "--once"]),
            "--once is an option of the live mode (--from-k8s without a file), not of --from-k8s dump.json"
        );
    }

    #[test]
    fn bad_command_lines() {
        let err = |v: &[&str]| p(v).unwrap().unwrap_err();
        assert_eq!(
            err(&["--from-k8s", "-", "--node-ip"]),
            "--node-ip needs a value"
        );
        assert_eq!(
            err(&["--from-k8s", "-", "--node-ip", "node-a"]),
            "--node-ip node-a: not an IP address"
        );
        assert_eq!(
            err(&["--from-k8s", "-", "-L"]),
            "unexpected argument -L for --from-k8s"
        );
        assert_eq!(
            err(&["--from-k8s", "-", "--dry-run=yes"]),
            "unexpected argument --dry-run for --from-k8s"
        );
        assert_eq!(err(&["--from-k8s="]), "--from-k8s=: an empty file name");
        assert_eq!(
            err(&["--from-k8s", "-", "--interface"]),
            "--interface needs a value"
        );
        assert_eq!(
            err(&["--from-k8s", "-", "--interface=way-too-long-a-name"]),
            "--interface \"way-too-long-a-name\": not an interface name (1 to 15 characters, no '/', ':' or spaces)"
        );
        assert_eq!(
            err(&["--from-k8s", "-", "--force=yes"]),
            "unexpected argument --force for --from-k8s"
        );
        assert_eq!(
            err(&["--from-k8s", "-", "--set-sysctls=1"]),
            "unexpected argument --set-sysctls for --from-k8s"
        );
        assert_eq!(
            err(&["--from-k8s", "--localhost-nodeports=true"]),
            "unexpected argument --localhost-nodeports for --from-k8s"
        );
        assert_eq!(
            err(&["--from-k8s", "--localhost-nodeports", "--no-nftables"]),
            "--localhost-nodeports needs the packet path's rules: not with --no-nftables"
        );
        for addresses in ["primary", "192.168.1.0/24", "10.0.0.0/8,::1/128"] {
            assert_eq!(
                err(&[
                    "--from-k8s",
                    "--nodeport-addresses",
                    addresses,
                    "--localhost-nodeports"
                ]),
                "--localhost-nodeports: --nodeport-addresses holds no 127.0.0.1, so no NodePort is served on localhost (add 127.0.0.0/8 to it, or leave --localhost-nodeports out)",
                "{addresses}"
            );
        }
    }
}
