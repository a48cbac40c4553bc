//! Linux IPVS (IP Virtual Server) over generic netlink.
//!
//! Two layers, as in the rust-netlink crates:
//!
//! - the packet layer: [`IpvsMessage`] with its command ([`IpvsCmd`]) and
//!   one attribute enum per nest ([`IpvsAttr`], [`ServiceAttr`],
//!   [`DestAttr`], [`StatsAttr`], [`InfoAttr`], [`DaemonAttr`]), each
//!   ending in an `Other(DefaultNla)` that carries what a newer kernel
//!   adds. They parse and emit bytes and need no socket.
//! - the typed model ([`Service`], [`ServiceId`], [`Destination`],
//!   [`Stats`], [`Info`], [`Daemon`], [`Timeouts`]) and a blocking
//!   [`Handle`] over netlink sockets, in the caller's network namespace
//!   or another one ([`Handle::in_netns`], [`Handle::in_named_netns`]).
//!
//! ```no_run
//! use ipvs_netlink::{Destination, Handle, Service, ServiceId, TunnelFlags, TunnelType};
//!
//! # fn main() -> Result<(), ipvs_netlink::Error> {
//! let mut ipvs = Handle::new()?;
//! let vip = ServiceId::tcp("10.97.97.97:80".parse().unwrap());
//! ipvs.add_service(&Service::new(vip, "rr"))?;
//! for pod in ["10.244.1.39:80", "10.244.1.40:80", "10.244.2.33:80"] {
//!     ipvs.add_destination(&vip, &Destination::new(pod.parse().unwrap()))?;
//! }
//! // A GUE tunnel to an IPv6 real server: families may mix for tunnels.
//! let remote = Destination::new("[2001:db8::7]:80".parse().unwrap())
//!     .tunnel(TunnelType::Gue, Some(6080), TunnelFlags::CSUM);
//! ipvs.add_destination(&vip, &remote)?;
//! assert_eq!(ipvs.destinations(&vip)?.len(), 4);
//!
//! // The same table seen from another network namespace.
//! let mut blue = Handle::in_named_netns("blue")?;
//! blue.for_each_service(|svc| println!("{} {:?}", svc.id, svc.stats))?;
//! # Ok(())
//! # }
//! ```
//!
//! The packet layer runs anywhere; this builds the request `ipvsadm -Z -t
//! 10.97.97.97:80` sends and reads it back:
//!
//! ```
//! use ipvs_netlink::netlink_packet_core::{Emitable, ParseableParametrized};
//! use ipvs_netlink::netlink_packet_generic::GenlHeader;
//! use ipvs_netlink::{IpvsAttr, IpvsCmd, IpvsMessage, ServiceId};
//!
//! let vip = ServiceId::tcp("10.97.97.97:80".parse().unwrap());
//! let zero = IpvsMessage::new(IpvsCmd::Zero, vec![IpvsAttr::Service(vip.to_attrs())]);
//! let mut bytes = vec![0; zero.buffer_len()];
//! zero.emit(&mut bytes);
//! let header = GenlHeader { cmd: IpvsCmd::Zero.into(), version: 1 };
//! let back = IpvsMessage::parse_with_param(&bytes[..], header).unwrap();
//! assert_eq!(ServiceId::from_attrs(back.service_attrs().unwrap()).unwrap(), vip);
//! ```
//!
//! `examples/list.rs` lists a table with its counters, streaming.
//!
//! # Dumps while the table changes
//!
//! A service or destination dump arrives in several datagrams, and the
//! kernel releases its lock between two of them. IPVS resumes a dump by
//! position (the number of entries already sent), not by key, and never
//! sets `NLM_F_DUMP_INTR`, so a caller cannot learn that the table changed
//! meanwhile. What a caller can rely on:
//!
//! - every entry returned existed when its datagram was built, and its
//!   fields and counters are those of that moment;
//! - no entry is returned twice: repeats (entries pushed past the resume
//!   position by an insertion) are dropped by identity, [`ServiceId`] for
//!   services and address and port for destinations; the first copy is
//!   kept;
//! - without concurrent writers a dump is complete and exact;
//! - with concurrent writers, an entry added or deleted during the dump
//!   may or may not be listed, and an entry that existed throughout can be
//!   missed when entries before it were deleted. For a consistent view,
//!   serialise the writers, or dump until two dumps agree;
//! - a destination dump of a service deleted meanwhile is empty, not an
//!   error.
//!
//! The streaming forms ([`Handle::for_each_service`],
//! [`Handle::for_each_destination`]) hold one datagram and the set of
//! identities seen, whatever the size of the table.
//!
//! Every operation needs `CAP_NET_ADMIN` in the network namespace of the
//! socket, reads included; entering another namespace needs
//! `CAP_SYS_ADMIN`.

#![deny(missing_docs)]

mod batch;
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
pub mod sysctl;
mod types;
mod wire;

pub use batch::{Op, MAX_IN_FLIGHT};
pub use config::Timeouts;
pub use daemon::{Daemon, DaemonAttr, DaemonState};
pub use dest::{DestAttr, Destination, ForwardMethod, TunnelFlags, TunnelType};
pub use error::{Error, Operation, Result};
pub use handle::{Direction, Handle, DEFAULT_TIMEOUT, MIN_RECEIVE_BUFFER, MIN_SEND_BUFFER};
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
