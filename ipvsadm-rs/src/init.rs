//! ipvsadm's start-up (`ipvs_init`): open the handle, load the module
//! once if IPVS is absent, and word a failure as 1.31 does.

use std::process::Command;

use ipvs_netlink::{Error, Handle};
use ipvs_plan::messages::message;

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
