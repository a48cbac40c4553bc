//! Linux IPVS (IP Virtual Server) over generic netlink.
//!
//! Two layers, as in the rust-netlink crates:
//!
//! - the packet layer: [`IpvsMessage`] with its command ([`IpvsCmd`]) and
//!   one attribute enum per nest ([`IpvsAttr`], [`ServiceAttr`],
//!   [`DestAttr`], [`StatsAttr`], [`InfoAttr`]), each ending in an
//!   `Other(DefaultNla)` that carries what a newer kernel adds. They parse
//!   and emit bytes and need no socket.
//! - the typed model ([`Service`], [`ServiceId`], [`Destination`],
//!   [`Stats`], [`Info`]) and a blocking [`Handle`] over one netlink
//!   socket.
//!
//! ```no_run
//! use ipvs_netlink::{Destination, Handle, Service, ServiceId};
//!
//! # fn main() -> Result<(), ipvs_netlink::Error> {
//! let mut ipvs = Handle::new()?;
//! let vip = ServiceId::tcp("10.97.97.97:80".parse().unwrap());
//! ipvs.add_service(&Service::new(vip, "rr"))?;
//! for pod in ["10.244.1.39:80", "10.244.1.40:80", "10.244.2.33:80"] {
//!     ipvs.add_destination(&vip, &Destination::new(pod.parse().unwrap()))?;
//! }
//! assert_eq!(ipvs.destinations(&vip)?.len(), 3);
//! # Ok(())
//! # }
//! ```
//!
//! Every operation needs `CAP_NET_ADMIN` in the network namespace of the
//! socket, reads included.

#![deny(missing_docs)]

pub mod config;
pub mod daemon;
pub mod dest;
mod error;
mod handle;
pub mod info;
mod message;
mod netns;
mod nla_util;
pub mod service;
pub mod stats;
mod types;

pub use config::Timeouts;
pub use daemon::{Daemon, DaemonAttr, DaemonState};
pub use dest::{DestAttr, Destination, ForwardMethod, TunnelFlags, TunnelType};
pub use error::{Error, Operation, Result};
pub use handle::{Direction, Handle, DEFAULT_TIMEOUT};
pub use info::{Info, InfoAttr};
pub use message::{IpvsAttr, IpvsCmd, IpvsMessage, IPVS_GENL_NAME, IPVS_GENL_VERSION};
pub use netns::NETNS_RUN_DIR;
pub use service::{Netmask, Service, ServiceAttr, ServiceFlags, ServiceId};
pub use stats::{Stats, StatsAttr};
pub use types::{AddressFamily, Protocol, AF_INET, AF_INET6};

/// Re-exported so users of the packet layer need no direct dependency.
pub use netlink_packet_core;
pub use netlink_packet_generic;

/// The README's example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
