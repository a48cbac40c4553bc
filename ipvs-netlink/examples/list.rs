//! Lists the IPVS table with its counters as a table (comfy-table), like
//! `ipvsadm -Ln --stats` with the weights and connection counts beside,
//! streaming the dumps, optionally in another network namespace:
//!
//! ```text
//! cargo run -p ipvs-netlink --example list                 # this namespace
//! cargo run -p ipvs-netlink --example list -- blue         # /run/netns/blue
//! cargo run -p ipvs-netlink --example list -- /proc/42/ns/net
//! ```
//!
//! Needs `CAP_NET_ADMIN` (and `CAP_SYS_ADMIN` to enter a namespace).

use std::process::ExitCode;

use comfy_table::{presets, CellAlignment, Table};
use ipvs_netlink::{Error, Handle, Stats};

fn open(target: Option<&str>) -> Result<Handle, Error> {
    match target {
        None => Handle::new(),
        Some(path) if path.contains('/') => Handle::in_netns(path),
        Some(name) => Handle::in_named_netns(name),
    }
}

/// A row: what it is, its scheduler or forwarding method, weight, active
/// and inactive connections (blank for a service), then the counters.
fn row(name: String, how: String, conns: Option<(u32, u32, u32)>, s: Option<Stats>) -> Vec<String> {
    let s = s.unwrap_or_default();
    let (weight, active, inactive) = match conns {
        Some((w, a, i)) => (w.to_string(), a.to_string(), i.to_string()),
        None => Default::default(),
    };
    let mut out = vec![name, how, weight, active, inactive];
    out.extend([s.conns, s.in_pkts, s.out_pkts, s.in_bytes, s.out_bytes].map(|n| n.to_string()));
    out
}

fn run(target: Option<&str>) -> Result<(), Error> {
    let mut services = open(target)?;
    // A second handle lists destinations while the first streams services.
    let mut dests = open(target)?;
    let info = services.info()?;
    let (major, minor, patch) = info.version_triple();
    println!(
        "IP Virtual Server version {major}.{minor}.{patch} (size={})",
        info.conn_table_size
    );
    let mut table = Table::new();
    table.load_preset(presets::UTF8_FULL_CONDENSED).set_header([
        "Service / -> real server",
        "Sched / fwd",
        "Weight",
        "ActiveConn",
        "InActConn",
        "Conns",
        "InPkts",
        "OutPkts",
        "InBytes",
        "OutBytes",
    ]);
    let mut failed = None;
    services.for_each_service(|svc| {
        table.add_row(row(
            svc.id.to_string(),
            svc.scheduler.clone(),
            None,
            svc.stats,
        ));
        let listed = dests.for_each_destination(&svc.id, |rs| {
            table.add_row(row(
                format!("-> {}", rs.socket_addr()),
                rs.forward.to_string(),
                Some((rs.weight, rs.active_conns, rs.inactive_conns)),
                rs.stats,
            ));
        });
        if let Err(e) = listed {
            failed.get_or_insert(e);
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    for i in 2..10 {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    println!("{table}");
    Ok(())
}

fn main() -> ExitCode {
    let target = std::env::args().nth(1);
    match run(target.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("list: {e}");
            ExitCode::FAILURE
        }
    }
}
