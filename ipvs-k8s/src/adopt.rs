//! `--adopt`: taking over the virtual services another proxy left in the
//! table (kube-proxy's IPVS mode, kube-router) or that a lost state file
//! no longer lists, when they are exactly what the mapping would write.
//!
//! What "exactly" means: the virtual service's own settings, all of those
//! the state file records ([`crate::ownership::settings`]): scheduler,
//! flags (the kernel's HASHED aside), persistence timeout, persistence
//! netmask and persistence engine. A service whose settings match is
//! *adopted*: recorded in the state file as if it had created it, and
//! from then on managed as its own (its real servers synced to the
//! endpoints, deleted when its Service goes). Its real servers are no
//! condition: forwarding method, weight and the set of real servers may
//! differ, since syncing them to the endpoints is the point of adopting.
//! A service whose settings differ in any field is not adopted: left
//! alone, reported with the fields that differ. A service no Service
//! wants is never adopted (nothing says it was a proxy's).
//!
//! Adoption happens at the first sync of a run that writes (and again
//! after a sync that broke off before its records were written): a
//! service another tool creates later at an address the mapping wants is
//! a conflict, as without the flag. The addresses on the dummy interface
//! follow the services: an address is the sync's while a service it owns
//! uses it, so the addresses of adopted services are kept (they are
//! already bound) and removed with them.

use ipvs_netlink::{Netmask, Service, ServiceFlags};

/// The fields in which `have` (the kernel's) differs from `want` (what
/// the mapping writes), one phrase each (`scheduler wlc, the mapping
/// writes rr`); empty when it can be adopted.
pub fn differences(have: &Service, want: &Service) -> Vec<String> {
    let mut out = Vec::new();
    let mut differ = |what: &str, have: String, want: String| {
        if have != want {
            out.push(format!("{what} {have}, the mapping writes {want}"));
        }
    };
    differ(
        "scheduler",
        crate::escape_controls(&have.scheduler).into_owned(),
        want.scheduler.clone(),
    );
    let flags = |s: &Service| {
        let f = s.flags - ServiceFlags::HASHED;
        if f.is_empty() {
            "none".to_owned()
        } else {
            f.to_string()
        }
    };
    differ("flags", flags(have), flags(want));
    let timeout = |s: &Service| {
        if s.timeout == 0 {
            "none".to_owned()
        } else {
            format!("{} s", s.timeout)
        }
    };
    differ("persistence timeout", timeout(have), timeout(want));
    let mask = |s: &Service| match s.netmask {
        Netmask::V4(m) => m.to_string(),
        Netmask::V6(p) => format!("/{p}"),
    };
    differ("persistence netmask", mask(have), mask(want));
    let pe = |s: &Service| {
        s.persistence_engine
            .as_deref()
            .map_or("none".to_owned(), |p| {
                crate::escape_controls(p).into_owned()
            })
    };
    differ("persistence engine", pe(have), pe(want));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ownership::settings;
    use ipvs_netlink::ServiceId;

    /// Adoptable exactly when the state file would record the same
    /// settings: the two notions of "the same service" never drift.
    #[test]
    fn differences_are_the_fields_the_state_file_records() {
        let id = ServiceId::tcp("10.96.0.1:443".parse().unwrap());
        let want = Service::new(id, "rr");
        let mut listed = want.clone();
        listed.flags |= ServiceFlags::HASHED;
        assert!(differences(&listed, &want).is_empty());
        type Change = fn(&mut Service);
        let cases: [(Change, &str); 6] = [
            (
                |s| s.scheduler = "wlc".into(),
                "scheduler wlc, the mapping writes rr",
            ),
            (|s| s.flags |= ServiceFlags::SCHED2, "flags "),
            (
                |s| {
                    s.flags |= ServiceFlags::PERSISTENT;
                    s.timeout = 300;
                },
                "persistence timeout 300 s, the mapping writes none",
            ),
            (
                |s| s.netmask = Netmask::V4("255.255.255.0".parse().unwrap()),
                "persistence netmask 255.255.255.0, the mapping writes 255.255.255.255",
            ),
            (
                |s| s.persistence_engine = Some("sip".into()),
                "persistence engine sip, the mapping writes none",
            ),
            (|s| s.flags |= ServiceFlags::ONE_PACKET, "flags "),
        ];
        for (change, phrase) in cases {
            let mut have = listed.clone();
            change(&mut have);
            let why = differences(&have, &want);
            assert!(!why.is_empty(), "{have:?}");
            assert_ne!(settings(&have), settings(&want));
            assert!(why.iter().any(|w| w.starts_with(phrase)), "{why:?}");
        }
    }
}
