//! ipvsadm's error texts (libipvs's `ipvs_strerror`) and its start-up.

use std::io;
use std::process::Command;

use ipvs_netlink::{Error, Handle, Operation};

/// The message libipvs prints for `errno` after `op`.
pub fn message(op: Option<Operation>, errno: i32) -> String {
    use Operation::*;
    let specific = match (op, errno) {
        (Some(AddService), libc::EEXIST) => Some("Service already exists"),
        (Some(AddService | EditService), libc::ENOENT) => {
            Some("Scheduler or persistence engine not found")
        }
        (Some(EditService | DeleteService | Zero), libc::ESRCH) => Some("No such service"),
        (Some(StartDaemon), libc::EEXIST) => Some("Daemon has already run"),
        (Some(StopDaemon), libc::ESRCH) => Some("No daemon is running"),
        (Some(AddDestination | EditDestination | DeleteDestination), libc::ESRCH) => {
            Some("Service not defined")
        }
        (Some(AddDestination), libc::EEXIST) => Some("Destination already exists"),
        (Some(EditDestination | DeleteDestination), libc::ENOENT) => Some("No such destination"),
        (Some(ListServices | ListDestinations | GetService), libc::ESRCH) => {
            Some("No such service")
        }
        (_, libc::EPERM) => Some("Permission denied (you must be root)"),
        (_, libc::EINVAL) => {
            Some("Invalid operation.  Possibly wrong module version, address not unicast, ...")
        }
        (_, libc::ENOPROTOOPT) => Some("Protocol not available"),
        (_, libc::ENOMEM) => Some("Memory allocation problem"),
        (_, libc::EOPNOTSUPP) => Some("Operation not supported with IPv6"),
        (_, libc::EAFNOSUPPORT) => Some("Operation not supported with specified address family"),
        (_, libc::EMSGSIZE) => Some("Module is wrong version"),
        _ => None,
    };
    match specific {
        Some(s) => s.to_owned(),
        None => strerror(errno),
    }
}

/// The C library's text for an errno, without Rust's " (os error N)".
pub fn strerror(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    match text.rfind(" (os error ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

/// The text for any handle error: the kernel's errno as ipvsadm words it,
/// anything else in our own words.
pub fn describe(e: &Error) -> String {
    match e.errno() {
        Some(errno) if matches!(e, Error::Kernel { .. } | Error::PermissionDenied { .. }) => {
            message(e.operation(), errno)
        }
        _ => e.to_string(),
    }
}

/// Opens the handle and reads the IPVS info as ipvsadm's `ipvs_init`
/// does; when that fails, runs `modprobe -- ip_vs` once and tries again.
/// The error is ipvsadm's message (exit code 2).
pub fn open_handle() -> Result<Handle, String> {
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
        init().map_err(|e| init_failure(&e))
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
