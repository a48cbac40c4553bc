//! Connection timeouts (`--set`, `--timeout`).

/// The tcp, tcpfin and udp connection timeouts in seconds. When setting,
/// 0 keeps the kernel's current value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Timeouts {
    /// Established TCP connections.
    pub tcp: u32,
    /// TCP connections after a FIN.
    pub tcp_fin: u32,
    /// UDP.
    pub udp: u32,
}

impl Timeouts {
    /// Timeouts of `tcp`, `tcp_fin` and `udp` seconds.
    pub fn new(tcp: u32, tcp_fin: u32, udp: u32) -> Self {
        Timeouts { tcp, tcp_fin, udp }
    }
}
