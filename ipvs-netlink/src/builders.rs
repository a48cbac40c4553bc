//! The builder methods the model's [`Service`](crate::Service) and
//! [`Destination`](crate::Destination) share with the desired state's
//! types (ipvs-plan's `ServiceSpec` and `DestinationSpec`), written once:
//! each type's `impl` block expands the macro over its own fields of the
//! same names. Not an API of its own (hidden from the docs); the methods
//! it writes are documented on each type.

/// `persistent`, `with_flags`, `with_netmask`, `with_persistence_engine`
/// over fields `flags`, `timeout`, `netmask`, `persistence_engine:
/// Option<String>`.
#[doc(hidden)]
#[macro_export]
macro_rules! __service_builders {
    () => {
        /// Makes the service persistent for `timeout` seconds.
        pub fn persistent(mut self, timeout: u32) -> Self {
            self.flags |= $crate::ServiceFlags::PERSISTENT;
            self.timeout = timeout;
            self
        }

        /// Sets the flags (replacing all of them).
        pub fn with_flags(mut self, flags: $crate::ServiceFlags) -> Self {
            self.flags = flags;
            self
        }

        /// Sets the persistence netmask.
        pub fn with_netmask(mut self, netmask: $crate::Netmask) -> Self {
            self.netmask = netmask;
            self
        }

        /// Sets the persistence engine.
        pub fn with_persistence_engine(mut self, name: impl Into<String>) -> Self {
            self.persistence_engine = Some(name.into());
            self
        }
    };
}

/// `weight`, `forward`, `thresholds` over fields `weight`, `forward`,
/// `upper_threshold`, `lower_threshold` (`tunnel` differs: the model's
/// tunnel fields are what the kernel reported, optional).
#[doc(hidden)]
#[macro_export]
macro_rules! __destination_builders {
    () => {
        /// Sets the weight.
        pub fn weight(mut self, weight: u32) -> Self {
            self.weight = weight;
            self
        }

        /// Sets the forwarding method.
        pub fn forward(mut self, forward: $crate::ForwardMethod) -> Self {
            self.forward = forward;
            self
        }

        /// Sets the upper and lower connection thresholds.
        pub fn thresholds(mut self, upper: u32, lower: u32) -> Self {
            self.upper_threshold = upper;
            self.lower_threshold = lower;
            self
        }
    };
}
