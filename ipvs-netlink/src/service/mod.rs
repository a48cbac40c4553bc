//! Virtual services: the `IPVS_SVC_ATTR_*` nest and its typed model.

pub(crate) mod attr;
mod model;

pub use attr::ServiceAttr;
pub use model::{Netmask, Service, ServiceFlags, ServiceId};
