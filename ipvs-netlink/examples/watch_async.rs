//! An async watcher of IPVS counters: reads every service's counters each
//! interval with [`ipvs_netlink::AsyncHandle`] and prints them with their
//! rates over the interval just ended.
//!
//! ```text
//! cargo run -p ipvs-netlink --features tokio --example watch_async            # every second
//! cargo run -p ipvs-netlink --features tokio --example watch_async -- 0.5 10  # 10 reads, 0.5 s apart
//! ```
//!
//! Each read prints `read N interval SECONDS` (the time since the previous
//! read, `-` for the first), then one line per service: its counters as
//! `ipvsadm -Ln --stats --exact` lists them (connections, packets in and
//! out, bytes in and out), then `rates` and the same five per second
//! (`-` on the first read); an empty line ends the read:
//!
//! ```text
//! read 2 interval 1.000412
//! TCP 10.97.97.97:80 10 52 40 3120 2080 rates 2.000 10.000 8.000 624.000 416.000
//!
//! ```
//!
//! Needs `CAP_NET_ADMIN`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use ipvs_netlink::{AsyncHandle, ServiceId, Stats};
use tokio::time::{interval, Instant, MissedTickBehavior};

/// The five counters `ipvsadm -Ln --stats` lists.
fn counters(s: &Stats) -> [u64; 5] {
    [s.conns, s.in_pkts, s.out_pkts, s.in_bytes, s.out_bytes]
}

fn usage() -> ExitCode {
    eprintln!("usage: watch_async [INTERVAL_SECONDS [COUNT]]");
    ExitCode::from(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let every = match args.first().map(|a| a.parse::<f64>()) {
        None => 1.0,
        Some(Ok(secs)) if secs > 0.0 && secs.is_finite() => secs,
        Some(_) => return usage(),
    };
    let count = match args.get(1).map(|a| a.parse::<u64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return usage(),
    };
    if args.len() > 2 {
        return usage();
    }
    let ipvs = match AsyncHandle::new().await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("watch_async: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut ticks = interval(Duration::from_secs_f64(every));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut previous: Option<(Instant, HashMap<ServiceId, [u64; 5]>)> = None;
    let mut read = 0u64;
    while count.is_none_or(|n| read < n) {
        ticks.tick().await;
        let services = match ipvs.services().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("watch_async: {e}");
                return ExitCode::FAILURE;
            }
        };
        let now = Instant::now();
        read += 1;
        let elapsed = previous
            .as_ref()
            .map(|(then, _)| now.duration_since(*then).as_secs_f64());
        let mut out = format!(
            "read {read} interval {}\n",
            elapsed.map_or("-".to_owned(), |s| format!("{s:.6}"))
        );
        let mut seen = HashMap::new();
        for svc in &services {
            let c = counters(&svc.stats.unwrap_or_default());
            out.push_str(&format!(
                "{} {} {} {} {} {} rates",
                svc.id, c[0], c[1], c[2], c[3], c[4]
            ));
            let before = previous.as_ref().and_then(|(_, p)| p.get(&svc.id));
            match (before, elapsed) {
                (Some(b), Some(secs)) if secs > 0.0 => {
                    for i in 0..5 {
                        // A counter zeroed meanwhile counts from 0.
                        let delta = c[i].checked_sub(b[i]).unwrap_or(c[i]);
                        out.push_str(&format!(" {:.3}", delta as f64 / secs));
                    }
                }
                _ => out.push_str(" - - - - -"),
            }
            out.push('\n');
            seen.insert(svc.id, c);
        }
        out.push('\n');
        print!("{out}");
        previous = Some((now, seen));
    }
    ExitCode::SUCCESS
}
