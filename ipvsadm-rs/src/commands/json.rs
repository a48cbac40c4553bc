//! The list commands with `--json`: the same data as the text forms, as
//! one JSON document (schema in `format/json.rs`).

use ipvs_netlink::{Destination, Handle, Service};

use super::convert::service_id;
use crate::cli::options::optc;
use crate::cli::Entry;
use crate::format::fmt;
use crate::format::json;
use crate::format::sort::{cmp_dests, cmp_services, glibc_msort};
use crate::io::{Flow, Out};
use ipvsadm_compat::messages as strerror;

fn fail(io: &mut Out, msg: &str) -> Flow {
    let _ = io.out.flush();
    let _ = io.err.write_all(format!("{msg}\n").as_bytes());
    Flow::Exit(1)
}

fn with_dests(
    handle: &mut Handle,
    services: Vec<Service>,
    sort: bool,
) -> Result<Vec<(Service, Vec<Destination>)>, ipvs_netlink::Error> {
    let mut out = Vec::with_capacity(services.len());
    for svc in services {
        let mut dests = handle.destinations(&svc.id)?;
        if sort {
            glibc_msort(&mut dests, &cmp_dests);
        }
        out.push((svc, dests));
    }
    Ok(out)
}

/// Runs a list command (already checked for conflicts) with `--json`.
pub fn list(handle: &mut Handle, e: &Entry, io: &mut Out) -> Flow {
    let sort = e.format & fmt::NOSORT == 0;
    let doc = if e.has(optc::CONNECTION) {
        match super::conn::connections() {
            Ok(c) => json::connections(&c),
            Err(msg) => return fail(io, &msg),
        }
    } else if e.has(optc::TIMEOUT) {
        match handle.timeouts() {
            Ok(t) => json::timeouts(&t),
            Err(err) => return fail(io, &strerror::describe(&err)),
        }
    } else if e.has(optc::DAEMON) {
        match handle.daemons() {
            Ok(d) => json::daemons(&d),
            Err(err) => return fail(io, &strerror::describe(&err)),
        }
    } else if e.has(optc::SERVICE) {
        let found = handle.service(&service_id(&e.svc));
        match found.and_then(|s| with_dests(handle, s.into_iter().collect(), sort)) {
            Ok(one) if one.is_empty() => return fail(io, "No such service"),
            Ok(mut one) if super::only_server(e).is_some() => {
                let server = super::only_server(e);
                for (_, dests) in &mut one {
                    dests.retain(|d| Some(d.socket_addr()) == server);
                }
                if one.iter().all(|(_, d)| d.is_empty()) {
                    return fail(io, "No such destination");
                }
                json::table(None, &one)
            }
            Ok(one) => json::table(None, &one),
            Err(err) => return fail(io, &strerror::describe(&err)),
        }
    } else {
        let listed = handle.info().and_then(|info| {
            let mut services = handle.services()?;
            if sort {
                glibc_msort(&mut services, &cmp_services);
            }
            Ok((info, with_dests(handle, services, sort)?))
        });
        match listed {
            Ok((info, all)) => json::table(Some(&info), &all),
            Err(err) => return fail(io, &strerror::describe(&err)),
        }
    };
    let _ = io.out.write_all(doc.as_bytes());
    Flow::Return(0)
}
