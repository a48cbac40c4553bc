//! `--sysctls` (read by [`crate::cli::args`]): IPVS's sysctls of the
//! namespace, what the library knows of each, the estimator's state and
//! the connection table's size ([`crate::format::sysctls`] prints them).

use ipvs_netlink::{sysctl, Handle};

use crate::format::sysctls::{json, text, Report};
use crate::io::Out;

/// Reads and prints them: exit 0, or 1 when the sysctls cannot be read.
/// A sysctl the library does not know is listed raw, never an error.
/// The connection table's size is the kernel's info reply (the `size=`
/// of `-L`, for the namespace on kernels with per-namespace tables).
pub fn run(handle: &mut Handle, io: &mut Out) -> i32 {
    let sysctls = match sysctl::read_all() {
        Ok(s) => s,
        Err(e) => {
            io.err(&format!("ipvsadm-rs: --sysctls: {e}\n"));
            return 1;
        }
    };
    let report = Report {
        sysctls,
        conn_table_size: handle
            .info()
            .ok()
            .map(|i| u64::from(i.conn_table_size))
            .or_else(|| sysctl::conn_table_size().ok().flatten()),
        status: sysctl::status().ok().flatten(),
    };
    let printed = if io.json {
        json(&report)
    } else {
        text(&report)
    };
    let _ = io.out.write_all(printed.as_bytes());
    0
}
