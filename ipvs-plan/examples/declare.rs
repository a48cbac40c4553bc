//! A declarative sync: reads the wanted table from a JSON file, plans it
//! against the kernel's table and applies the plan, printing one line per
//! write with its result.
//!
//! ```text
//! cargo run -p ipvs-plan --features serde --example declare -- table.json [--drain] [--own ADDR,...]
//! ```
//!
//! The file is a table document as `ipvsadm-rs -Ln --json` prints it
//! (`{"services": [...]}`; counters and unknown members are ignored), so
//! a listing saved from one machine declares the table of another. This
//! program owns the virtual addresses the file names (or those `--own`
//! gives), and the firewall marks it lists: a service on one of them that
//! the file does not list is deleted, a service on any other address is
//! another tool's and never touched (a wanted service another tool holds
//! is reported as a conflict). With `--drain`, real servers no longer
//! wanted drain at weight 0 while they have connections.
//!
//! Output, one line each: `ok OP`, `failed OP: ERROR`, `conflict SERVICE`,
//! `draining SERVICE -> ADDRESS`, and last `N writes, M failed`. Exit
//! status 0 when every write went through, 1 when one failed, 2 when the
//! file or the kernel could not be read. Needs `CAP_NET_ADMIN`.

use std::collections::HashSet;
use std::net::IpAddr;
use std::process::ExitCode;

use ipvs_netlink::{Handle, Op, ServiceId};
use ipvs_plan::{current_table, Planner, Removal, VirtualServerSpec};
use serde::Deserialize;

/// The part of a table document this program reads.
#[derive(Deserialize)]
struct Document {
    services: Vec<VirtualServerSpec>,
}

/// A write in words.
fn describe(op: &Op) -> String {
    match op {
        Op::AddService(s) => format!("add service {} {}", s.id, s.scheduler),
        Op::EditService(s) => format!("edit service {} {}", s.id, s.scheduler),
        Op::DeleteService(id) => format!("delete service {id}"),
        Op::AddDestination(id, d) => format!(
            "add real server {id} -> {} {} weight {}",
            d.socket_addr(),
            d.forward,
            d.weight
        ),
        Op::EditDestination(id, d) => format!(
            "edit real server {id} -> {} {} weight {}",
            d.socket_addr(),
            d.forward,
            d.weight
        ),
        Op::DeleteDestination(id, addr) => format!("delete real server {id} -> {addr}"),
        other => format!("{other:?}"),
    }
}

/// The virtual address of a service (none for a firewall mark).
fn address(id: &ServiceId) -> Option<IpAddr> {
    match id {
        ServiceId::Inet { addr, .. } => Some(*addr),
        ServiceId::Fwmark { .. } => None,
    }
}

/// What the command line asks for.
struct Args {
    path: String,
    removal: Removal,
    own: Option<HashSet<IpAddr>>,
}

fn args() -> Result<Args, String> {
    let mut path = None;
    let mut removal = Removal::Delete;
    let mut own = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--drain" => removal = Removal::Drain,
            "--own" => {
                let list = args.next().ok_or("--own needs addresses")?;
                let addrs = list
                    .split(',')
                    .map(|a| {
                        a.parse()
                            .map_err(|_| format!("--own: {a:?} is not an address"))
                    })
                    .collect::<Result<_, _>>()?;
                own = Some(addrs);
            }
            _ if path.is_none() && !arg.starts_with("--") => path = Some(arg),
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    let path = path.ok_or("no file")?;
    Ok(Args { path, removal, own })
}

fn run(args: Args) -> Result<bool, String> {
    let path = &args.path;
    let text = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let doc: Document = serde_json::from_slice(&text).map_err(|e| format!("{path}: {e}"))?;
    let ours: HashSet<IpAddr> = args.own.unwrap_or_else(|| {
        doc.services
            .iter()
            .filter_map(|v| address(&v.service.id))
            .collect()
    });
    let marks: HashSet<ServiceId> = doc
        .services
        .iter()
        .map(|v| v.service.id)
        .filter(|id| address(id).is_none())
        .collect();
    let owns = |id: &ServiceId| address(id).map_or(marks.contains(id), |a| ours.contains(&a));

    let mut ipvs = Handle::new().map_err(|e| e.to_string())?;
    let current = current_table(&mut ipvs).map_err(|e| e.to_string())?;
    let plan = Planner::new()
        .owning(owns)
        .removal(args.removal)
        .plan(&doc.services, &current)
        .map_err(|e| format!("{path}: {e}"))?;
    for id in &plan.conflicts {
        println!("conflict {id}");
    }
    let results = ipvs.apply(&plan.ops).map_err(|e| e.to_string())?;
    let mut failed = 0;
    for (op, result) in plan.ops.iter().zip(&results) {
        match result {
            Ok(()) => println!("ok {}", describe(op)),
            Err(e) => {
                failed += 1;
                println!("failed {}: {e}", describe(op));
            }
        }
    }
    for (id, addr) in &plan.draining {
        println!("draining {id} -> {addr}");
    }
    println!("{} writes, {failed} failed", plan.ops.len());
    Ok(failed == 0)
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("declare: {e}\nusage: declare FILE.json [--drain] [--own ADDR,...]");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("declare: {e}");
            ExitCode::from(2)
        }
    }
}
