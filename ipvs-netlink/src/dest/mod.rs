//! Destinations (real servers): the `IPVS_DEST_ATTR_*` nest and its typed
//! model.

pub(crate) mod attr;
mod model;

pub use attr::DestAttr;
pub use model::{Destination, ForwardMethod, TunnelFlags, TunnelType};
