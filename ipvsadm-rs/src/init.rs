//! ipvsadm's start-up (`ipvs_init`): open the handle, load the module
//! once if IPVS is absent, and word a failure as 1.31 does.

use std::process::Command;

use ipvs_netlink::{Error, Handle};
use ipvsadm_compat::messages::message;

/// Opens the handle and reads the IPVS info as ipvsadm's `ipvs_init`
/// does; when that fails, runs `modprobe -- ip_vs` once and tries again.
/// The error is ipvsadm's message (exit code 2).
pub fn open_handle() -> Result<Handle, String> {
    open().map_err(|e| init_failure(&e))
}

/// [`open_handle`] as the program `prog` (`argv[0]`): under the name
/// `ipvsadm`, 1.31's messages; under any other, a refusal for lack of
/// privilege says which capability is missing and in which namespace.
pub fn open_handle_as(prog: &str) -> Result<Handle, String> {
    open().map_err(|e| {
        let refused = matches!(e, Error::PermissionDenied { .. })
            || e.errno()
                .is_some_and(|n| n == libc::EPERM || n == libc::EACCES);
        if refused && !crate::cli::options::is_ipvsadm(prog) {
            permission_message(&Namespaces::of_self())
        } else {
            init_failure(&e)
        }
    })
}

/// Where this process stands: its namespaces and whether it holds
/// CAP_NET_ADMIN in its own user namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespaces {
    /// `/proc/self/ns/user`'s link, such as `user:[4026531837]`.
    pub user: String,
    /// `/proc/self/ns/net`'s link.
    pub net: String,
    /// Whether CAP_NET_ADMIN is among the effective capabilities.
    pub net_admin: bool,
}

/// The inode of the initial user namespace (`PROC_USER_INIT_INO`).
const INITIAL_USER_NS: &str = "user:[4026531837]";

impl Namespaces {
    /// This process's, from /proc (unknown parts read `?`).
    pub fn of_self() -> Namespaces {
        let link = |p: &str| {
            std::fs::read_link(p)
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "?".to_owned())
        };
        let cap_eff = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(0);
        Namespaces {
            user: link("/proc/self/ns/user"),
            net: link("/proc/self/ns/net"),
            // CAP_NET_ADMIN is capability 12 (linux/capability.h).
            net_admin: cap_eff & (1 << 12) != 0,
        }
    }
}

/// The message of a refusal for lack of privilege, under our own name.
pub fn permission_message(ns: &Namespaces) -> String {
    let initial = ns.user == INITIAL_USER_NS;
    let why = match (initial, ns.net_admin) {
        (false, false) => format!(
            "this process runs in user namespace {}, not the initial one, and lacks CAP_NET_ADMIN even there (as under `unshare -U`): run it as root in the initial user namespace, or in a network namespace of its own user namespace (`unshare -U -r -n`)",
            ns.user
        ),
        (false, true) => format!(
            "this process has CAP_NET_ADMIN only in user namespace {}, not the initial one, which does not own the network namespace {} (as under `unshare -U -r` without `-n`): run it as root in the initial user namespace, or in a network namespace of its own user namespace",
            ns.user, ns.net
        ),
        (true, false) => "this process lacks CAP_NET_ADMIN: run it as root, or give it the capability".to_owned(),
        (true, true) => "the kernel refused although this process has CAP_NET_ADMIN in the initial user namespace (a security module may deny it)".to_owned(),
    };
    format!(
        "ipvsadm-rs: cannot open IPVS: permission denied: IPVS needs CAP_NET_ADMIN in the user namespace that owns the network namespace {}\nipvsadm-rs: {why}\n",
        ns.net
    )
}

fn open() -> Result<Handle, Error> {
    let init = || -> Result<Handle, Error> {
        let mut h = Handle::new()?;
        h.info()?;
        Ok(h)
    };
    init().or_else(|_| {
        let _ = Command::new("/sbin/modprobe")
            .args(["--", "ip_vs"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        init()
    })
}

fn init_failure(e: &Error) -> String {
    let reason = match e {
        // libipvs falls back to the old socket option, which answers
        // ENOPROTOOPT when IPVS is absent.
        Error::NotAvailable => message(None, libc::ENOPROTOOPT),
        Error::Kernel { errno, .. } => message(None, *errno),
        Error::PermissionDenied { .. } => message(None, libc::EPERM),
        other => other.to_string(),
    };
    format!(
        "Can't initialize ipvs: {reason}\nAre you sure that IP Virtual Server is built in the kernel or as module?\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_permission_message_names_the_capability_and_the_namespace() {
        let ns = |user: &str, net_admin| Namespaces {
            user: user.to_owned(),
            net: "net:[4026531840]".to_owned(),
            net_admin,
        };
        // Inside `unshare -U`: every capability, in a user namespace that
        // does not own the network namespace.
        let m = permission_message(&ns("user:[4026532201]", true));
        assert!(m.starts_with("ipvsadm-rs: cannot open IPVS: permission denied: IPVS needs CAP_NET_ADMIN in the user namespace that owns the network namespace net:[4026531840]\n"), "{m}");
        assert!(
            m.contains("only in user namespace user:[4026532201], not the initial one"),
            "{m}"
        );
        assert!(!m.contains("Are you sure"));
        let m = permission_message(&ns(INITIAL_USER_NS, false));
        assert!(m.contains("lacks CAP_NET_ADMIN"), "{m}");
        // 1.31's words are another function's, for the name `ipvsadm`.
        assert_eq!(
            init_failure(&Error::PermissionDenied {
                op: ipvs_netlink::Operation::GetInfo
            }),
            "Can't initialize ipvs: Permission denied (you must be root)\nAre you sure that IP Virtual Server is built in the kernel or as module?\n"
        );
    }
}
