//! The desired state: services and real servers as a caller asks for
//! them, without the counters and connection counts the kernel reports,
//! and with an equality that is the kernel's.
//!
//! [`Service`] and [`Destination`] are what the kernel reports: they
//! carry counters, and the kernel adds [`ServiceFlags::HASHED`] to every
//! service and reports tunnel fields a writer never set, so `==` on them
//! does not say whether two tables are the same. [`ServiceSpec`] and
//! [`DestinationSpec`] hold only what a write sets; two of them are equal
//! (and hash alike) exactly when writing one over the other changes
//! nothing, so a desired table can be compared, hashed, deduplicated and
//! kept in a `HashSet`.
//!
//! ```
//! use ipvs_netlink::{Destination, Service, ServiceFlags, ServiceId};
//! use ipvs_plan::{DestinationSpec, ServiceSpec};
//!
//! let id = ServiceId::tcp("10.0.0.1:80".parse()?);
//! let want = ServiceSpec::new(id, "rr").persistent(300);
//! // What the kernel lists for it: HASHED added, counters filled in.
//! let mut listed = Service::new(id, "rr").persistent(300);
//! listed.flags |= ServiceFlags::HASHED;
//! assert_eq!(ServiceSpec::from(&listed), want);
//!
//! let rs = DestinationSpec::new("10.1.0.1:80".parse()?).weight(2);
//! let mut reported = Destination::new("10.1.0.1:80".parse()?).weight(2);
//! reported.active_conns = 7;
//! assert_eq!(DestinationSpec::from(&reported), rs);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

use ipvs_netlink::{
    Destination, ForwardMethod, Netmask, Service, ServiceFlags, ServiceId, TunnelFlags, TunnelType,
};

use crate::VirtualServer;

/// A virtual service as a caller wants it: identity and settings, no
/// counters.
///
/// Equality and hashing leave out [`ServiceFlags::HASHED`] (the kernel
/// sets it on every service, whatever was written) and read an empty
/// persistence engine as none (the kernel reports no engine as an empty
/// name): two specs are equal exactly when the kernel holds them alike.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServiceSpec {
    /// What identifies the service.
    pub id: ServiceId,
    /// Scheduler name (`rr`, `wlc`, ...).
    pub scheduler: String,
    /// Flags ([`ServiceFlags::HASHED`] is not compared).
    pub flags: ServiceFlags,
    /// Persistence timeout in seconds (meaningful with `PERSISTENT`).
    pub timeout: u32,
    /// Persistence netmask.
    pub netmask: Netmask,
    /// Persistence engine (`sip`), if any.
    pub persistence_engine: Option<String>,
}

impl ServiceSpec {
    /// A service with `scheduler`, no flags, no persistence and the full
    /// netmask of its family, as [`Service::new`].
    pub fn new(id: ServiceId, scheduler: impl Into<String>) -> Self {
        Self::from(Service::new(id, scheduler))
    }

    ipvs_netlink::__service_builders!();

    /// What equality and hashing compare.
    fn key(&self) -> (ServiceId, &str, ServiceFlags, u32, Netmask, &str) {
        (
            self.id,
            &self.scheduler,
            self.flags - ServiceFlags::HASHED,
            self.timeout,
            self.netmask,
            self.persistence_engine.as_deref().unwrap_or(""),
        )
    }
}

impl PartialEq for ServiceSpec {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for ServiceSpec {}

impl Hash for ServiceSpec {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl From<&Service> for ServiceSpec {
    /// The settings of a service, its counters left out.
    fn from(s: &Service) -> Self {
        ServiceSpec {
            id: s.id,
            scheduler: s.scheduler.clone(),
            flags: s.flags,
            timeout: s.timeout,
            netmask: s.netmask,
            persistence_engine: s.persistence_engine.clone(),
        }
    }
}

impl From<Service> for ServiceSpec {
    fn from(s: Service) -> Self {
        ServiceSpec {
            id: s.id,
            scheduler: s.scheduler,
            flags: s.flags,
            timeout: s.timeout,
            netmask: s.netmask,
            persistence_engine: s.persistence_engine,
        }
    }
}

impl From<ServiceSpec> for Service {
    /// The service to write: no counters.
    fn from(s: ServiceSpec) -> Self {
        let mut out = Service::new(s.id, s.scheduler)
            .with_flags(s.flags)
            .with_netmask(s.netmask);
        out.timeout = s.timeout;
        out.persistence_engine = s.persistence_engine;
        out
    }
}

impl From<&ServiceSpec> for Service {
    fn from(s: &ServiceSpec) -> Self {
        Service::from(s.clone())
    }
}

/// A real server as a caller wants it: address and settings, no counters
/// and no connection counts.
///
/// The tunnel fields are plain values: a writer that sets none gets the
/// kernel's defaults (IPIP, port 0, no flags), which is what the kernel
/// reports for it, so equality is the kernel's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DestinationSpec {
    /// The real server's address and port (its identity within a
    /// service).
    pub addr: SocketAddr,
    /// Forwarding method.
    pub forward: ForwardMethod,
    /// Scheduling weight (0 takes the server out of rotation).
    pub weight: u32,
    /// Upper connection threshold, 0 for none.
    pub upper_threshold: u32,
    /// Lower connection threshold.
    pub lower_threshold: u32,
    /// Tunnel type (used with [`ForwardMethod::Tunnel`]).
    pub tunnel_type: TunnelType,
    /// Tunnel (GUE) port, 0 for none.
    pub tunnel_port: u16,
    /// Tunnel checksum flags.
    pub tunnel_flags: TunnelFlags,
}

impl DestinationSpec {
    /// A masquerading real server of weight 1 without thresholds, as
    /// [`Destination::new`].
    pub fn new(addr: SocketAddr) -> Self {
        Self::from(&Destination::new(addr))
    }

    ipvs_netlink::__destination_builders!();

    /// Makes the real server a tunnel of `kind` with GUE `port` (0 for
    /// none) and checksum `flags`, as [`Destination::tunnel`].
    pub fn tunnel(mut self, kind: TunnelType, port: u16, flags: TunnelFlags) -> Self {
        self.forward = ForwardMethod::Tunnel;
        self.tunnel_type = kind;
        self.tunnel_port = port;
        self.tunnel_flags = flags;
        self
    }
}

impl From<&Destination> for DestinationSpec {
    /// The settings of a real server, its counters and connection counts
    /// left out, tunnel fields it does not report as the kernel's
    /// defaults.
    fn from(d: &Destination) -> Self {
        DestinationSpec {
            addr: d.socket_addr(),
            forward: d.forward,
            weight: d.weight,
            upper_threshold: d.upper_threshold,
            lower_threshold: d.lower_threshold,
            tunnel_type: d.tunnel_type.unwrap_or(TunnelType::Ipip),
            tunnel_port: d.tunnel_port.unwrap_or(0),
            tunnel_flags: d.tunnel_flags.unwrap_or(TunnelFlags::empty()),
        }
    }
}

impl From<Destination> for DestinationSpec {
    fn from(d: Destination) -> Self {
        DestinationSpec::from(&d)
    }
}

impl From<&DestinationSpec> for Destination {
    /// The real server to write. Tunnel fields at the kernel's defaults
    /// are left unset, so the request is what a writer that never named a
    /// tunnel sends (kernels before 5.3 know no tunnel attribute).
    fn from(d: &DestinationSpec) -> Self {
        let mut out = Destination::new(d.addr)
            .forward(d.forward)
            .weight(d.weight)
            .thresholds(d.upper_threshold, d.lower_threshold);
        let defaults =
            d.tunnel_type == TunnelType::Ipip && d.tunnel_port == 0 && d.tunnel_flags.is_empty();
        if !defaults {
            out.tunnel_type = Some(d.tunnel_type);
            out.tunnel_port = Some(d.tunnel_port);
            out.tunnel_flags = Some(d.tunnel_flags);
        }
        out
    }
}

impl From<DestinationSpec> for Destination {
    fn from(d: DestinationSpec) -> Self {
        Destination::from(&d)
    }
}

/// A virtual service as a caller wants it, with its real servers: one
/// entry of a desired table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VirtualServerSpec {
    /// The service.
    pub service: ServiceSpec,
    /// Its real servers, each address once.
    pub dests: Vec<DestinationSpec>,
}

impl VirtualServerSpec {
    /// A service without real servers.
    pub fn new(service: ServiceSpec) -> Self {
        VirtualServerSpec {
            service,
            dests: Vec::new(),
        }
    }

    /// Adds a real server.
    pub fn with_dest(mut self, dest: DestinationSpec) -> Self {
        self.dests.push(dest);
        self
    }
}

impl From<&VirtualServer> for VirtualServerSpec {
    /// The settings of a service and its real servers, counters left out.
    fn from(v: &VirtualServer) -> Self {
        VirtualServerSpec {
            service: ServiceSpec::from(&v.service),
            dests: v.dests.iter().map(DestinationSpec::from).collect(),
        }
    }
}

impl From<VirtualServer> for VirtualServerSpec {
    fn from(v: VirtualServer) -> Self {
        VirtualServerSpec::from(&v)
    }
}

impl From<&VirtualServerSpec> for VirtualServer {
    /// The service and real servers to write.
    fn from(v: &VirtualServerSpec) -> Self {
        VirtualServer {
            service: Service::from(&v.service),
            dests: v.dests.iter().map(Destination::from).collect(),
        }
    }
}

impl From<VirtualServerSpec> for VirtualServer {
    fn from(v: VirtualServerSpec) -> Self {
        VirtualServer::from(&v)
    }
}

/// With the feature `serde`: the desired state in the JSON schema of
/// `ipvsadm-rs -Ln --json`, as the kernel's types with no counters (a
/// service with its `destinations`), so that the tool's listing reads as
/// a desired table and a desired table as the tool's `--apply` input.
#[cfg(feature = "serde")]
mod serde_impls {
    use super::*;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    impl Serialize for ServiceSpec {
        fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
            Service::from(self).serialize(ser)
        }
    }

    impl<'de> Deserialize<'de> for ServiceSpec {
        fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
            Service::deserialize(de).map(ServiceSpec::from)
        }
    }

    impl Serialize for DestinationSpec {
        fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
            Destination::from(self).serialize(ser)
        }
    }

    impl<'de> Deserialize<'de> for DestinationSpec {
        fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
            Destination::deserialize(de).map(DestinationSpec::from)
        }
    }

    /// A service and its real servers: the service's members and
    /// `destinations`.
    #[derive(Serialize, Deserialize)]
    struct Entry<S, D> {
        #[serde(flatten)]
        service: S,
        #[serde(default = "Vec::new")]
        destinations: Vec<D>,
    }

    impl Serialize for VirtualServerSpec {
        fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
            Entry {
                service: &self.service,
                destinations: self.dests.iter().collect(),
            }
            .serialize(ser)
        }
    }

    impl<'de> Deserialize<'de> for VirtualServerSpec {
        fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
            let e = Entry::<ServiceSpec, DestinationSpec>::deserialize(de)?;
            Ok(VirtualServerSpec {
                service: e.service,
                dests: e.destinations,
            })
        }
    }

    impl Serialize for VirtualServer {
        fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
            Entry {
                service: &self.service,
                destinations: self.dests.iter().collect(),
            }
            .serialize(ser)
        }
    }

    impl<'de> Deserialize<'de> for VirtualServer {
        fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
            let e = Entry::<Service, Destination>::deserialize(de)?;
            Ok(VirtualServer {
                service: e.service,
                dests: e.destinations,
            })
        }
    }
}
