//! `-L` and `-S` in ipvsadm's text formats: read the kernel's table,
//! sort it as 1.31 does (glibc's merge sort), print it with [`crate::format::list`].

use std::net::SocketAddr;

use ipvs_netlink::{Handle, Service, ServiceId};
use ipvsadm_compat::messages as strerror;

use crate::format::sort::{cmp_dests, cmp_services, glibc_msort};
use crate::format::{fmt, list};
use crate::io::{Flow, Out};
use crate::names::Names;

fn list_failure(err: &ipvs_netlink::Error, io: &mut Out) -> Flow {
    io.err(&format!("{}\n", strerror::describe(err)));
    Flow::Exit(1)
}

/// ipvsadm's `list_all`: the version line (not with `-S`), the titles and
/// every service, sorted unless `--nosort`.
pub fn list_all(handle: &mut Handle, format: u32, io: &mut Out) -> Flow {
    let names = crate::names::for_numeric(format & fmt::NUMERIC != 0);
    if format & fmt::RULE == 0 {
        match handle.info() {
            Ok(info) => {
                let _ = io.out.write_all(list::version_line(&info).as_bytes());
            }
            Err(e) => return list_failure(&e, io),
        }
    }
    let mut services = match handle.services() {
        Ok(s) => s,
        Err(e) => return list_failure(&e, io),
    };
    if format & fmt::NOSORT == 0 {
        glibc_msort(&mut services, &cmp_services);
    }
    let _ = io.out.write_all(list::title(format).as_bytes());
    for svc in &services {
        if let Err(flow) = print_service(handle, svc, None, format, names.as_ref(), io) {
            return flow;
        }
    }
    Flow::Return(0)
}

fn print_service(
    handle: &mut Handle,
    svc: &Service,
    only: Option<SocketAddr>,
    format: u32,
    names: &dyn Names,
    io: &mut Out,
) -> Result<(), Flow> {
    let mut dests = handle
        .destinations(&svc.id)
        .map_err(|e| list_failure(&e, io))?;
    if let Some(server) = only {
        dests.retain(|d| d.socket_addr() == server);
        if dests.is_empty() {
            io.err("No such destination\n");
            return Err(Flow::Exit(1));
        }
    }
    if format & fmt::NOSORT == 0 {
        glibc_msort(&mut dests, &cmp_dests);
    }
    let text = list::service_entry(svc, &dests, format, names);
    if io.out.write_all(text.as_bytes()).is_err() {
        // A closed pipe (`| head`) ends the listing quietly.
        return Err(Flow::Exit(0));
    }
    Ok(())
}

/// `-L -t ...`: one service, without the version line; with `only`
/// (`-r`, under our own name), that one real server of it.
pub(crate) fn list_service(
    handle: &mut Handle,
    id: &ServiceId,
    only: Option<SocketAddr>,
    format: u32,
    io: &mut Out,
) -> Flow {
    let names = crate::names::for_numeric(format & fmt::NUMERIC != 0);
    match handle.service(id) {
        Ok(Some(svc)) => {
            let _ = io.out.write_all(list::title(format).as_bytes());
            match print_service(handle, &svc, only, format, names.as_ref(), io) {
                Ok(()) => Flow::Return(0),
                Err(flow) => flow,
            }
        }
        Ok(None) => {
            io.err("No such service\n");
            Flow::Exit(1)
        }
        Err(e) => list_failure(&e, io),
    }
}
