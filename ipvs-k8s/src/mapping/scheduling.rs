//! A Service's scheduler from its annotations: ours
//! (`ipvsadm-rs.io/scheduler`, `ipvsadm-rs.io/sched-flags`) and
//! kube-router's (`kube-router.io/service.scheduler`,
//! `kube-router.io/service.schedflags`), so that a cluster moving from
//! kube-router keeps its per-Service schedulers (and `--adopt` finds
//! kube-router's virtual services exactly as the mapping writes them).
//!
//! kube-router's, as its proxy reads them (pkg/controllers/proxy,
//! `buildServicesInfo`, `parseSchedFlags`):
//! - the scheduler is one of `rr`, `lc`, `dh`, `sh`, `mh`, `wrr`, `wlc`,
//!   compared exactly; kube-router takes any other value silently as `rr`;
//! - the flags are a comma-separated list of `flag-1`, `flag-2`, `flag-3`
//!   (blanks around each trimmed), used only when the scheduler is `mh`;
//!   kube-router skips any other word silently. With `mh` and no flags it
//!   sets none (kube-proxy's `--ipvs-scheduler mh` sets `flag-2`).
//!
//! Ours take what ipvsadm's `-s` and `-b` take: any scheduler of
//! ipvsadm 1.31's list (and `twos`), and the flags `flag-1`, `flag-2`,
//! `flag-3`, `sh-fallback`, `sh-port` (with `sh`), `mh-fallback`,
//! `mh-port` (with `mh`). Without a flags annotation the scheduler's
//! default flags are used (`mh`: `mh-port`, as kube-proxy's); an empty
//! one means no flag.
//!
//! Which wins: when either of ours is present, ours decide and
//! kube-router's are not read; otherwise kube-router's. Our flags need our
//! scheduler beside them (else they are ignored, with a warning). A value that is
//! not accepted is a warning naming the Service and the annotation, and
//! the default is used (the node's `-s` scheduler, or no flag; an unknown
//! word among kube-router's flags is skipped, as kube-router skips it),
//! never a skipped Service.

use std::collections::BTreeMap;

use crate::model::Scheduling;

/// Our annotation of a Service's scheduler.
pub const SCHEDULER: &str = "ipvsadm-rs.io/scheduler";
/// Our annotation of a Service's scheduler flags.
pub const SCHED_FLAGS: &str = "ipvsadm-rs.io/sched-flags";
/// kube-router's annotation of a Service's scheduler.
pub const KUBE_ROUTER_SCHEDULER: &str = "kube-router.io/service.scheduler";
/// kube-router's annotation of a Service's scheduler flags.
pub const KUBE_ROUTER_SCHED_FLAGS: &str = "kube-router.io/service.schedflags";

/// The schedulers kube-router's annotation accepts.
const KUBE_ROUTER_SCHEDULERS: [&str; 7] = ["rr", "lc", "dh", "sh", "mh", "wrr", "wlc"];

/// The schedulers our annotation accepts: ipvsadm 1.31's list, and
/// `twos` (Linux 5.13).
const SCHEDULERS: [&str; 14] = [
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

/// The scheduling `annotations` ask for (`None`: the node's default),
/// with a warning for each value not accepted, naming `object`
/// (`Service ns/name`).
pub fn scheduling(
    annotations: Option<&BTreeMap<String, String>>,
    object: &str,
    warnings: &mut Vec<String>,
) -> Option<Scheduling> {
    let annotations = annotations?;
    let ours = (annotations.get(SCHEDULER), annotations.get(SCHED_FLAGS));
    let theirs = (
        annotations.get(KUBE_ROUTER_SCHEDULER),
        annotations.get(KUBE_ROUTER_SCHED_FLAGS),
    );
    let mut warn = |key: &str, value: &str, why: String| {
        warnings.push(format!(
            "{object}: annotation {key} {:?}: {why}",
            crate::escape_controls(value)
        ));
    };
    if ours.0.is_some() || ours.1.is_some() {
        let scheduler = match (ours.0.map(|s| s.trim()), ours.1) {
            (Some(s), _) if SCHEDULERS.contains(&s) => s.to_owned(),
            (Some(s), _) => {
                warn(
                    SCHEDULER,
                    s,
                    format!(
                        "not a scheduler ({}): the default scheduler is used",
                        SCHEDULERS.join(", ")
                    ),
                );
                return None;
            }
            (None, flags) => {
                let flags = flags.map_or("", |f| f.as_str());
                warn(
                    SCHED_FLAGS,
                    flags,
                    format!("needs {SCHEDULER} beside it: ignored"),
                );
                return None;
            }
        };
        let flags = match ours.1 {
            None => default_flags(&scheduler),
            Some(text) => our_flags(text, &scheduler).unwrap_or_else(|why| {
                warn(
                    SCHED_FLAGS,
                    text,
                    format!("{why}: the default flags are used"),
                );
                default_flags(&scheduler)
            }),
        };
        return Some(Scheduling { scheduler, flags });
    }
    let scheduler = match theirs.0 {
        None => return None,
        Some(s) if KUBE_ROUTER_SCHEDULERS.contains(&s.as_str()) => s.clone(),
        Some(s) => {
            warn(
                KUBE_ROUTER_SCHEDULER,
                s,
                format!(
                    "not a scheduler kube-router accepts ({}): the default scheduler is used",
                    KUBE_ROUTER_SCHEDULERS.join(", ")
                ),
            );
            return None;
        }
    };
    let mut flags = [false; 3];
    if let Some(text) = theirs.1 {
        if scheduler != "mh" {
            warn(
                KUBE_ROUTER_SCHED_FLAGS,
                text,
                format!(
                    "used only with the scheduler mh (as kube-router), not {scheduler}: ignored"
                ),
            );
        } else {
            for word in text.split(',').map(|w| w.trim_matches(' ')) {
                match word {
                    "flag-1" => flags[0] = true,
                    "flag-2" => flags[1] = true,
                    "flag-3" => flags[2] = true,
                    "" => {}
                    other => warn(
                        KUBE_ROUTER_SCHED_FLAGS,
                        text,
                        format!(
                            "{:?} is not flag-1, flag-2 or flag-3: skipped (as kube-router skips it)",
                            crate::escape_controls(other)
                        ),
                    ),
                }
            }
        }
    }
    Some(Scheduling { scheduler, flags })
}

/// The flags a scheduler gets when nothing names them: `mh` the port
/// flag (`mh-port`, as kube-proxy sets it), any other none.
pub fn default_flags(scheduler: &str) -> [bool; 3] {
    [false, scheduler == "mh", false]
}

/// Our flags annotation, as ipvsadm's `-b` reads it for `scheduler`.
fn our_flags(text: &str, scheduler: &str) -> Result<[bool; 3], String> {
    let mut flags = [false; 3];
    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let (bit, only) = match word {
            "flag-1" => (0, None),
            "flag-2" => (1, None),
            "flag-3" => (2, None),
            "sh-fallback" => (0, Some("sh")),
            "sh-port" => (1, Some("sh")),
            "mh-fallback" => (0, Some("mh")),
            "mh-port" => (1, Some("mh")),
            other => {
                return Err(format!(
                    "{:?} is not a scheduler flag (flag-1, flag-2, flag-3, sh-fallback, sh-port, mh-fallback, mh-port)",
                    crate::escape_controls(other)
                ))
            }
        };
        if let Some(only) = only {
            if scheduler != only {
                return Err(format!(
                    "{word} is a flag of the scheduler {only}, not of {scheduler}"
                ));
            }
        }
        flags[bit] = true;
    }
    Ok(flags)
}
