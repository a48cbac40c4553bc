//! Pure functions from the kernel's table to ipvsadm's text.

pub mod families;
pub mod json;
pub mod list;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod sort;
pub mod sysctls;

/// ipvsadm's output formats (`FMT_*`), combined as bits.
pub mod fmt {
    /// `-n`.
    pub const NUMERIC: u32 = 0x1;
    /// `-S`: restore lines.
    pub const RULE: u32 = 0x2;
    /// `--stats`.
    pub const STATS: u32 = 0x4;
    /// `--rate`.
    pub const RATE: u32 = 0x8;
    /// `--thresholds`.
    pub const THRESHOLDS: u32 = 0x10;
    /// `--persistent-conn`.
    pub const PERSISTENTCONN: u32 = 0x20;
    /// `--nosort`.
    pub const NOSORT: u32 = 0x40;
    /// `--exact`.
    pub const EXACT: u32 = 0x80;
    /// `--tun-info`.
    pub const TUN_INFO: u32 = 0x100;
}

use std::net::IpAddr;

use ipvs_netlink::Protocol;

use crate::names::Names;

/// ipvsadm's `addrport_to_anyname`: `host:port`, IPv6 in brackets, names
/// when `names` has them, cut to the 59 characters of ipvsadm's buffer.
pub fn addr_port(addr: IpAddr, port: u16, protocol: Protocol, names: &dyn Names) -> String {
    let host = names.host(addr).unwrap_or_else(|| addr.to_string());
    let port = names
        .service(port, protocol)
        .unwrap_or_else(|| port.to_string());
    let mut s = match addr {
        IpAddr::V4(_) => format!("{host}:{port}"),
        IpAddr::V6(_) => format!("[{host}]:{port}"),
    };
    truncate(&mut s, 59);
    s
}

/// Cuts `s` to at most `n` bytes (on a character boundary), as ipvsadm
/// does by writing a NUL into its buffer.
pub fn truncate(s: &mut String, n: usize) {
    if s.len() > n {
        let mut cut = n;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}
