//! Lists the IPVS table like `ipvsadm -Ln --stats`, streaming the dumps,
//! optionally in another network namespace:
//!
//! ```text
//! cargo run -p ipvs-netlink --example list                 # this namespace
//! cargo run -p ipvs-netlink --example list -- blue         # /run/netns/blue
//! cargo run -p ipvs-netlink --example list -- /proc/42/ns/net
//! ```
//!
//! Needs `CAP_NET_ADMIN` (and `CAP_SYS_ADMIN` to enter a namespace).

use std::process::ExitCode;

use ipvs_netlink::{Error, Handle, Stats};

fn open(target: Option<&str>) -> Result<Handle, Error> {
    match target {
        None => Handle::new(),
        Some(path) if path.contains('/') => Handle::in_netns(path),
        Some(name) => Handle::in_named_netns(name),
    }
}

fn counters(s: Option<Stats>) -> String {
    let s = s.unwrap_or_default();
    format!(
        "{:>8} {:>8} {:>8} {:>10} {:>10}",
        s.conns, s.in_pkts, s.out_pkts, s.in_bytes, s.out_bytes
    )
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
    println!(
        "{:<40} {:>8} {:>8} {:>8} {:>10} {:>10}",
        "Service / -> destination", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
    );
    let mut failed = None;
    services.for_each_service(|svc| {
        println!(
            "{:<40} {}",
            format!("{} {}", svc.id, svc.scheduler),
            counters(svc.stats)
        );
        let listed = dests.for_each_destination(&svc.id, |rs| {
            println!(
                "{:<40} {}",
                format!("  -> {} {:?} w{}", rs.socket_addr(), rs.forward, rs.weight),
                counters(rs.stats)
            );
        });
        if let Err(e) = listed {
            failed.get_or_insert(e);
        }
    })?;
    failed.map_or(Ok(()), Err)
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
