//! The sysctls IPVS needs on a node, as kube-proxy's IPVS mode sets them
//! at start:
//! - `net.ipv4.vs.conntrack=1`: IPVS keeps conntrack entries for its
//!   connections, which the node's masquerading and firewall rules need
//!   (IPVS traffic reaches nftables NAT only with it), and which
//!   [`super::conntrack`] flushes for UDP;
//! - `net.ipv4.vs.expire_nodest_conn=1`: a connection whose real server
//!   was removed is dropped on its next packet instead of hanging (what
//!   lets UDP real servers be removed at once);
//! - `net.ipv4.vs.expire_quiescent_template=1`: a persistence template
//!   of a real server at weight 0 expires, so that `ClientIP` affinity
//!   does not keep sending new connections to a draining server;
//! - `net.ipv4.ip_forward=1`: the node forwards to the pods;
//! - `net.ipv4.vs.conn_reuse_mode=0`, only on kernels from 4.1 to before
//!   5.9 (on those, 1 delays a reused port's SYN by a second; later
//!   kernels fixed it and kube-proxy leaves the value alone there).
//!
//!
//! With kube-proxy's `--ipvs-strict-arp` ([`Sysctls::with_strict_arp`]),
//! also `net.ipv4.conf.all.arp_ignore=1` (answer ARP only for addresses
//! of the interface asked on, so the virtual addresses on the dummy
//! interface are never announced: what MetalLB's layer-2 mode needs) and
//! `net.ipv4.conf.all.arp_announce=2` (never use them as the source of
//! an ARP request).
//!
//! With `--localhost-nodeports` ([`Sysctls::with_localhost_nodeports`]),
//! also `net.ipv4.conf.all.route_localnet=1`, which kube-proxy's iptables
//! mode sets for the same: without it the kernel routes no packet with a
//! 127.0.0.0/8 source off the node (the DNAT of `127.0.0.1:NodePort` to
//! a pod) nor takes one for 127.0.0.0/8 from an interface (the pod's
//! answer, masquerade undone). It lets a neighbour send to the node's
//! 127.0.0.1 too (CVE-2020-8558), which the packet path's drop rule
//! stops ([`crate::packet`]). As every sysctl here, `--cleanup` leaves
//! it as it is (kube-proxy's `--cleanup` restores no sysctl either).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One sysctl and the value IPVS mode wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// Dotted name, `net.ipv4.vs.conntrack`.
    pub name: &'static str,
    /// The value wanted.
    pub value: &'static str,
    /// Who wants it, for the warnings: `IPVS mode` or `--ipvs-strict-arp`.
    pub by: &'static str,
}

/// Who wants the sysctls of [`wanted`].
pub const BY_IPVS: &str = "IPVS mode";
/// Who wants the sysctls of [`strict_arp`].
pub const BY_STRICT_ARP: &str = "--ipvs-strict-arp";
/// Who wants the sysctl of [`localhost_nodeports`].
pub const BY_LOCALHOST_NODEPORTS: &str = "--localhost-nodeports";

/// The kernel's version as (major, minor), from a release string such as
/// `6.1.0-31-amd64`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The sysctls wanted on a kernel of this version (`None`: unknown, so
/// `conn_reuse_mode` is left alone).
pub fn wanted(kernel: Option<(u32, u32)>) -> Vec<Wanted> {
    let mut out = vec![
        Wanted {
            name: "net.ipv4.vs.conntrack",
            value: "1",
            by: BY_IPVS,
        },
        Wanted {
            name: "net.ipv4.vs.expire_nodest_conn",
            value: "1",
            by: BY_IPVS,
        },
        Wanted {
            name: "net.ipv4.vs.expire_quiescent_template",
            value: "1",
            by: BY_IPVS,
        },
        Wanted {
            name: "net.ipv4.ip_forward",
            value: "1",
            by: BY_IPVS,
        },
    ];
    if kernel.is_some_and(|v| ((4, 1)..(5, 9)).contains(&v)) {
        out.push(Wanted {
            name: "net.ipv4.vs.conn_reuse_mode",
            value: "0",
            by: BY_IPVS,
        });
    }
    out
}

/// The sysctls of strict ARP (kube-proxy's `--ipvs-strict-arp`), as
/// kube-proxy sets them: `arp_ignore=1`, `arp_announce=2` on `all`.
pub fn strict_arp() -> Vec<Wanted> {
    vec![
        Wanted {
            name: "net.ipv4.conf.all.arp_ignore",
            value: "1",
            by: BY_STRICT_ARP,
        },
        Wanted {
            name: "net.ipv4.conf.all.arp_announce",
            value: "2",
            by: BY_STRICT_ARP,
        },
    ]
}

/// The sysctl of `--localhost-nodeports`, as kube-proxy's iptables mode
/// sets it for localhost NodePorts: `route_localnet=1` on `all`.
pub fn localhost_nodeports() -> Vec<Wanted> {
    vec![Wanted {
        name: "net.ipv4.conf.all.route_localnet",
        value: "1",
        by: BY_LOCALHOST_NODEPORTS,
    }]
}

/// A sysctl whose value is not the wanted one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// What is wanted.
    pub wanted: Wanted,
    /// What it is, or why it could not be read.
    pub have: Result<String, String>,
}

/// The sysctls under a `/proc/sys` (another root for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctls {
    root: PathBuf,
    strict_arp: bool,
    localhost_nodeports: bool,
}

impl Default for Sysctls {
    fn default() -> Self {
        Sysctls::at("/proc/sys")
    }
}

impl Sysctls {
    /// The sysctls under `root`.
    pub fn at(root: impl Into<PathBuf>) -> Sysctls {
        Sysctls {
            root: root.into(),
            strict_arp: false,
            localhost_nodeports: false,
        }
    }

    /// These sysctls, wanting those of [`strict_arp`] too when `on`.
    pub fn with_strict_arp(self, on: bool) -> Sysctls {
        Sysctls {
            strict_arp: on,
            ..self
        }
    }

    /// These sysctls, wanting that of [`localhost_nodeports`] too when
    /// `on`.
    pub fn with_localhost_nodeports(self, on: bool) -> Sysctls {
        Sysctls {
            localhost_nodeports: on,
            ..self
        }
    }

    /// The file of a dotted name.
    pub fn path(&self, name: &str) -> PathBuf {
        name.split('.')
            .fold(self.root.clone(), |p, part| p.join(part))
    }

    /// A sysctl's value, trimmed.
    pub fn read(&self, name: &str) -> io::Result<String> {
        Ok(fs::read_to_string(self.path(name))?.trim().to_owned())
    }

    /// Writes a sysctl.
    pub fn write(&self, name: &str, value: &str) -> io::Result<()> {
        fs::write(self.path(name), format!("{value}\n"))
    }

    /// The wanted sysctls for this kernel (and strict ARP's, if on).
    pub fn wanted(&self) -> Vec<Wanted> {
        let mut out = wanted(
            self.read("kernel.osrelease")
                .ok()
                .as_deref()
                .and_then(kernel_version),
        );
        if self.strict_arp {
            out.extend(strict_arp());
        }
        if self.localhost_nodeports {
            out.extend(localhost_nodeports());
        }
        out
    }

    /// The wanted sysctls that do not have their value.
    pub fn check(&self) -> Vec<Mismatch> {
        self.wanted()
            .into_iter()
            .filter_map(|w| {
                let have = self
                    .read(w.name)
                    .map_err(|e| describe(&self.path(w.name), &e));
                match &have {
                    Ok(v) if v == w.value => None,
                    _ => Some(Mismatch { wanted: w, have }),
                }
            })
            .collect()
    }
}

fn describe(path: &Path, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::NotFound && path.to_string_lossy().contains("/vs/") {
        format!(
            "{} is missing (is the ip_vs module loaded?)",
            path.display()
        )
    } else {
        format!("cannot read {}: {e}", path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_the_list() {
        assert_eq!(kernel_version("6.1.0-31-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("5.4.0"), Some((5, 4)));
        assert_eq!(kernel_version("4.19-rc1"), Some((4, 19)));
        assert_eq!(kernel_version("garbage"), None);
        let names = |k| wanted(k).iter().map(|w| w.name).collect::<Vec<_>>();
        let base = vec![
            "net.ipv4.vs.conntrack",
            "net.ipv4.vs.expire_nodest_conn",
            "net.ipv4.vs.expire_quiescent_template",
            "net.ipv4.ip_forward",
        ];
        assert_eq!(names(Some((6, 1))), base);
        assert_eq!(names(Some((5, 9))), base);
        assert_eq!(names(Some((4, 0))), base);
        assert_eq!(names(None), base);
        let arp: Vec<_> = strict_arp().iter().map(|w| (w.name, w.value)).collect();
        assert_eq!(
            arp,
            [
                ("net.ipv4.conf.all.arp_ignore", "1"),
                ("net.ipv4.conf.all.arp_announce", "2")
            ]
        );
        let mut old = base.clone();
        old.push("net.ipv4.vs.conn_reuse_mode");
        assert_eq!(names(Some((5, 4))), old);
        assert_eq!(names(Some((4, 1))), old);
    }

    #[test]
    fn check_reports_wrong_and_missing_values_and_write_fixes_them() {
        let root = std::env::temp_dir().join(format!("ipvsadm-rs-sysctl-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let s = Sysctls::at(&root);
        fs::create_dir_all(root.join("net/ipv4/vs")).unwrap();
        fs::create_dir_all(root.join("kernel")).unwrap();
        fs::create_dir_all(root.join("net/ipv4/conf/all")).unwrap();
        fs::write(root.join("kernel/osrelease"), "5.4.0-100-generic\n").unwrap();
        for (name, v) in [
            ("net.ipv4.vs.conntrack", "0"),
            ("net.ipv4.vs.expire_nodest_conn", "1"),
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.vs.conn_reuse_mode", "1"),
        ] {
            s.write(name, v).unwrap();
        }
        let found = s.check();
        let summary: Vec<(&str, Result<String, String>)> = found
            .iter()
            .map(|m| (m.wanted.name, m.have.clone()))
            .collect();
        assert_eq!(summary[0], ("net.ipv4.vs.conntrack", Ok("0".to_owned())));
        assert_eq!(summary[1].0, "net.ipv4.vs.expire_quiescent_template");
        assert!(
            summary[1]
                .1
                .as_ref()
                .unwrap_err()
                .ends_with("is missing (is the ip_vs module loaded?)"),
            "{summary:?}"
        );
        assert_eq!(
            summary[2],
            ("net.ipv4.vs.conn_reuse_mode", Ok("1".to_owned()))
        );
        assert_eq!(summary.len(), 3);
        for m in &found {
            s.write(m.wanted.name, m.wanted.value).unwrap();
        }
        assert!(s.check().is_empty());
        assert_eq!(s.read("net.ipv4.vs.conntrack").unwrap(), "1");
        // --localhost-nodeports wants route_localnet=1 as well, and only
        // with it.
        s.write("net.ipv4.conf.all.route_localnet", "0").unwrap();
        assert!(s.check().is_empty());
        let lh = s.clone().with_localhost_nodeports(true);
        let found = lh.check();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].wanted.name, "net.ipv4.conf.all.route_localnet");
        assert_eq!(found[0].wanted.by, BY_LOCALHOST_NODEPORTS);
        assert_eq!(found[0].have, Ok("0".to_owned()));
        lh.write("net.ipv4.conf.all.route_localnet", "1").unwrap();
        assert!(lh.check().is_empty());
        fs::remove_dir_all(&root).unwrap();
    }
}
