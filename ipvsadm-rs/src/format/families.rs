//! Which families of series a `--metrics` scrape carries: all four by
//! default, fewer with `--metrics-families` (for the exporter's life) or
//! with a scrape's `collect[]` parameters (node_exporter's way of asking
//! for some collectors: `/metrics?collect[]=node&collect[]=service`).
//! docs/metrics.md lists the series of each family and its share of a
//! scrape's bytes.

use std::fmt;

/// The families of a scrape, each on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Families {
    /// `node`: node_exporter's `ipvs` collector (the totals of
    /// /proc/net/ip_vs_stats and its three gauges per real server).
    pub node: bool,
    /// `service`: `ipvs_service_*_total`, five counters per virtual service.
    pub service: bool,
    /// `backend`: `ipvs_backend_*_total`, five counters per real server.
    pub backend: bool,
    /// `kube-router`: kube-router's ten gauges per Service port.
    pub kube_router: bool,
}

impl Default for Families {
    /// Every family.
    fn default() -> Self {
        Families::ALL
    }
}

impl Families {
    /// Every family (the default).
    pub const ALL: Families = Families {
        node: true,
        service: true,
        backend: true,
        kube_router: true,
    };

    /// No family.
    pub const NONE: Families = Families {
        node: false,
        service: false,
        backend: false,
        kube_router: false,
    };

    /// The names, in the order a scrape carries them.
    pub const NAMES: [&'static str; 4] = ["node", "service", "backend", "kube-router"];

    /// The families named in `names` (at least one; a name twice is
    /// once), or which name is unknown.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut out = Families::NONE;
        for name in names {
            match name {
                "node" => out.node = true,
                "service" => out.service = true,
                "backend" => out.backend = true,
                "kube-router" => out.kube_router = true,
                other => {
                    return Err(format!(
                        "unknown family {other:?} (the families: {})",
                        Families::NAMES.join(", ")
                    ))
                }
            }
        }
        if out == Families::NONE {
            return Err(format!(
                "no family named (the families: {})",
                Families::NAMES.join(", ")
            ));
        }
        Ok(out)
    }

    /// The families of a comma-separated list, as `--metrics-families`
    /// takes them (`node,service`).
    pub fn parse_list(list: &str) -> Result<Self, String> {
        Families::from_names(list.split(',').filter(|w| !w.is_empty()))
    }

    /// The families both `self` and `other` have.
    pub fn and(self, other: Families) -> Families {
        Families {
            node: self.node && other.node,
            service: self.service && other.service,
            backend: self.backend && other.backend,
            kube_router: self.kube_router && other.kube_router,
        }
    }

    /// Whether every family of `other` is one of `self`'s.
    pub fn covers(self, other: Families) -> bool {
        self.and(other) == other
    }

    /// Whether a scrape of these families needs the real servers (one
    /// dump per virtual service); without them, one dump of the services
    /// is the whole read.
    pub fn reads_real_servers(self) -> bool {
        self.node || self.backend
    }
}

impl fmt::Display for Families {
    /// The comma-separated list `--metrics-families` takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = [self.node, self.service, self.backend, self.kube_router];
        let names: Vec<&str> = Families::NAMES
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_read_and_spelled_back() {
        assert_eq!(
            Families::parse_list("node,service,backend,kube-router"),
            Ok(Families::ALL)
        );
        let two = Families::parse_list("kube-router,service,service").unwrap();
        assert_eq!(
            two,
            Families {
                service: true,
                kube_router: true,
                ..Families::NONE
            }
        );
        assert_eq!(two.to_string(), "service,kube-router");
        assert!(!two.reads_real_servers());
        assert!(Families::parse_list("backend")
            .unwrap()
            .reads_real_servers());
        assert!(Families::ALL.covers(two) && !two.covers(Families::ALL));
        assert_eq!(
            Families::parse_list("node,bogus"),
            Err(
                "unknown family \"bogus\" (the families: node, service, backend, kube-router)"
                    .into()
            )
        );
        assert_eq!(
            Families::parse_list(","),
            Err("no family named (the families: node, service, backend, kube-router)".into())
        );
    }
}
