#![doc = include_str!("../README.md")]
//!
//! # Where to start
//!
//! - [`Handle`]: the typed operations, [`Handle::apply`] for batches,
//!   [`Handle::in_netns`] and [`Handle::in_named_netns`] for another
//!   network namespace;
//! - [`Error`]: what went wrong, asked in IPVS's terms (below);
//! - [`Request`]: a request as the bytes the handle sends, for a program
//!   that drives its own socket;
//! - [`IpvsMessage`] and the attribute enums ([`IpvsAttr`],
//!   [`ServiceAttr`], [`DestAttr`], [`StatsAttr`], [`InfoAttr`],
//!   [`DaemonAttr`]): the packet layer;
//! - [`transport`]: the request loop, for IPVS and any other netlink
//!   protocol; [`batch`]: the pure state machine of a pipelined batch,
//!   which both handles drive;
//! - with the feature `tokio`, `AsyncHandle`: the same operations, async
//!   (see docs/library.md).
//!
//! # Guide
//!
//! ## First steps
//!
//! A [`Handle`] is a netlink socket bound to the kernel's IPVS family in
//! the calling thread's network namespace. A virtual service is named by
//! a [`ServiceId`] (protocol, address and port, or a firewall mark); its
//! real servers are [`Destination`]s. Builders give the usual settings;
//! reads return the kernel's view with its counters.
//!
//! ```no_run
//! use ipvs_netlink::{Destination, ForwardMethod, Handle, Service, ServiceId};
//!
//! let mut ipvs = Handle::new()?;
//! let vip: ServiceId = "TCP 10.97.97.97:80".parse()?; // or ServiceId::tcp(addr)
//! ipvs.add_service(&Service::new(vip, "wrr").persistent(300))?;
//! let pod = Destination::new("10.244.1.39:80".parse()?)
//!     .forward(ForwardMethod::DirectRoute)
//!     .weight(5);
//! ipvs.add_destination(&vip, &pod)?;
//! for svc in ipvs.services()? {
//!     println!("{} {} {}", svc.id, svc.scheduler, svc.flags);
//!     for rs in ipvs.destinations(&svc.id)? {
//!         println!("  -> {} {} w{} active {}", rs.socket_addr(), rs.forward, rs.weight, rs.active_conns);
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Batches
//!
//! Many writes go in pipelined datagrams with [`Handle::apply`]: each
//! write is an [`Op`], and each gets its own result, in order. The outer
//! `Result` is the transport's (the socket failed, the kernel stopped
//! answering).
//!
//! ```no_run
//! use ipvs_netlink::{Destination, Handle, Op, ServiceId};
//!
//! let mut ipvs = Handle::new()?;
//! let vip = ServiceId::tcp("10.97.97.97:80".parse()?);
//! let ops: Vec<Op> = (1..=50)
//!     .map(|i| Op::AddDestination(vip, Destination::new(([10, 244, 3, i], 80).into())))
//!     .collect();
//! for (op, result) in ops.iter().zip(ipvs.apply(&ops)?) {
//!     match result {
//!         Err(e) if e.is_already_exists() => {} // there already
//!         Err(e) => eprintln!("{op:?}: {e}"),
//!         Ok(()) => {}
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Declarative sync
//!
//! To say what the table should be rather than how to get there, the
//! crate `ipvs-plan` takes a desired table (`ServiceSpec`,
//! `DestinationSpec`: the settings without counters, with the kernel's
//! equality) and the kernel's (`ipvs_plan::current_table`), and returns
//! the fewest [`Op`]s for [`Handle::apply`], touching only the services
//! the caller owns and draining real servers on request. Its crate docs
//! and `ipvs-plan/examples/declare.rs` (a sync from a JSON file) show it.
//!
//! ## Namespaces
//!
//! [`Handle::in_named_netns`] (`/run/netns/NAME`, as `ip netns` makes
//! them) and [`Handle::in_netns`] (any path, such as `/proc/PID/ns/net`)
//! open the socket in another network namespace; the caller's threads
//! never move. The connection table reads the same way.
//!
//! ```no_run
//! use ipvs_netlink::{conn, Handle};
//!
//! let mut blue = Handle::in_named_netns("blue")?;
//! println!("{} services in blue", blue.services()?.len());
//! for c in conn::connections_in_netns("/run/netns/blue")? {
//!     println!("{} {} -> {} via {}", c.protocol, c.client, c.destination, c.virtual_address);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Async
//!
//! With the feature `tokio`, `AsyncHandle` has every operation of
//! [`Handle`] under the same names, `async` over `&self`; it is `Clone`,
//! `Send` and `Sync`, so tasks share one; dumps are also `Stream`s.
#![cfg_attr(
    feature = "tokio",
    doc = r#"
```no_run
use ipvs_netlink::{AsyncHandle, Destination, Service, ServiceId};

# async fn run() -> Result<(), ipvs_netlink::Error> {
let ipvs = AsyncHandle::new().await?;
let vip = ServiceId::tcp("10.97.97.97:80".parse().unwrap());
ipvs.add_service(&Service::new(vip, "rr")).await?;
let other = ipvs.clone(); // the same sockets, from another task
tokio::spawn(async move {
    let pod = Destination::new("10.244.1.39:80".parse().unwrap());
    other.add_destination(&vip, &pod).await
});
for svc in ipvs.services().await? {
    println!("{} {}", svc.id, svc.scheduler);
}
# Ok(())
# }
```
"#
)]
//!
//! ## Errors
//!
//! Every operation returns [`Error`], which names the operation and,
//! for a refusal of the kernel, its errno ([`Error::errno`]). Ask it what
//! happened in IPVS's terms rather than matching errnos, which IPVS
//! chooses per object:
//!
//! | question | true for |
//! |---|---|
//! | [`Error::is_already_exists`] | EEXIST: adding a service or destination that exists, starting a sync daemon of a state that runs |
//! | [`Error::is_not_found`] | ESRCH: a service that is not there (every command naming one but NEW_SERVICE; a destination's too), no sync daemon to stop; ENOENT: a destination that is not there (edit, delete) |
//! | [`Error::is_no_such_scheduler`] | ENOENT from adding or editing a service: no scheduler (or persistence engine) of that name |
//! | [`Error::is_permission`] | EPERM: no `CAP_NET_ADMIN` in the socket's namespace (reads included), or entering a namespace refused |
//!
//! Its `Display` says the same in IPVS's words ("add service: the service
//! already exists (EEXIST)"), and the socket's and the namespace's
//! system errors stay reachable through `std::error::Error::source`.
//!
//! ```no_run
//! use ipvs_netlink::{Handle, Service, ServiceId};
//!
//! let mut h = Handle::new()?;
//! let web = Service::new(ServiceId::tcp("10.0.0.1:80".parse()?), "wrr");
//! match h.add_service(&web) {
//!     Err(e) if e.is_already_exists() => h.edit_service(&web)?,
//!     other => other?,
//! }
//! match h.delete_service(&web.id) {
//!     Err(e) if e.is_not_found() => {} // gone already
//!     other => other?,
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
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

mod apply;
#[cfg(feature = "tokio")]
mod async_handle;
pub mod batch;
mod builders;
pub mod config;
pub mod conn;
pub mod daemon;
pub mod dest;
mod error;
mod handle;
pub mod info;
mod message;
mod netns;
mod nla_util;
mod op;
mod reply;
mod request;
pub mod scheduler;
#[cfg(feature = "serde")]
pub mod serde_model;
pub mod service;
pub mod stats;
pub mod sysctl;
pub mod transport;
mod types;

#[cfg(feature = "tokio")]
pub use async_handle::AsyncHandle;
pub use config::Timeouts;
pub use daemon::{Daemon, DaemonAttr, DaemonState};
pub use dest::{DestAttr, Destination, ForwardMethod, TunnelFlags, TunnelType};
pub use error::{Error, Operation, Result};
pub use handle::{Handle, DEFAULT_TIMEOUT, MIN_RECEIVE_BUFFER, MIN_SEND_BUFFER};
pub use info::{Info, InfoAttr};
pub use message::{IpvsAttr, IpvsCmd, IpvsMessage, IPVS_GENL_NAME, IPVS_GENL_VERSION};
pub use netns::NETNS_RUN_DIR;
pub use op::{Op, MAX_IN_FLIGHT};
pub use request::Request;
pub use service::{Netmask, Service, ServiceAttr, ServiceFlags, ServiceId};
pub use stats::{Stats, StatsAttr};
pub use transport::Direction;
pub use types::{AddressFamily, ParseError, Protocol, AF_INET, AF_INET6};

/// Re-exported so users of the packet layer need no direct dependency.
pub use netlink_packet_core;
pub use netlink_packet_generic;
