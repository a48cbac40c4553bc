//! `--metrics ADDR:PORT`: a Prometheus exporter of the table, served by
//! the project's one HTTP server ([`ipvs_k8s::serve`]). Each scrape of
//! `/metrics` reads the table once (one dump of the services, one of each
//! service's real servers, with their 64-bit counters) and
//! /proc/net/ip_vs_stats, and streams them as [`crate::format::metrics`]
//! encodes them; nothing is read between scrapes. The families served
//! are `--metrics-families`'s, or fewer when a scrape asks with
//! node_exporter's `collect[]` parameters; a scrape of families without
//! real servers reads only the services.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ipvs_k8s::serve::{self, Limits, Plain, Reply};
use ipvs_netlink::{Handle, ServiceId};
use ipvsadm_compat::messages as strerror;

use crate::format::metrics::{self, Families, Scrape};

/// The Kubernetes names the `--from-k8s` state file at `path` records
/// (`namespace/name:port` of each service it created and named); none
/// when it is missing, cannot be read or does not read (a scrape never
/// fails for it).
pub fn names(path: &Path) -> HashMap<ServiceId, String> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| ipvs_k8s::ownership::parse_named(&text).ok())
        .map(|(_, names)| names)
        .unwrap_or_default()
}

/// Reads what one scrape of `families` shows: /proc/net/ip_vs_stats (of
/// the namespace the process is in; `None` if it cannot be read, or not
/// asked for) and the table (its real servers only when a family needs
/// them).
pub fn scrape(handle: &mut Handle, families: Families) -> Result<Scrape, ipvs_netlink::Error> {
    let totals = families
        .node
        .then(|| std::fs::read_to_string("/proc/net/ip_vs_stats").ok())
        .flatten()
        .and_then(|t| metrics::parse_ip_vs_stats(&t));
    let services = handle.services()?;
    let mut table = Vec::with_capacity(services.len());
    for svc in services {
        let dests = if families.reads_real_servers() {
            handle.destinations(&svc.id)?
        } else {
            Vec::new()
        };
        table.push((svc, dests));
    }
    Ok(Scrape {
        totals,
        services: table,
        names: HashMap::new(),
        families,
    })
}

/// The families a scrape asks for with node_exporter's `collect[]`
/// parameters in `query` (`collect[]=node&collect[]=service`, URL-encoded
/// or not; other parameters are ignored), among those `served`: all of
/// `served` when it names none; a message for a 400 when it names one
/// that is unknown or not served.
pub fn asked(query: &str, served: Families) -> Result<Families, String> {
    let names: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .filter(|(key, _)| key == "collect[]")
        .map(|(_, value)| value.into_owned())
        .collect();
    if names.is_empty() {
        return Ok(served);
    }
    let wanted = Families::from_names(names.iter().map(String::as_str))
        .map_err(|e| format!("collect[]: {e}"))?;
    if !served.covers(wanted) {
        return Err(format!(
            "collect[]: {wanted} asked, {served} served (--metrics-families)"
        ));
    }
    Ok(wanted)
}

/// How many scrapes are made at once, each from its read until its last
/// chunk is sent. Each holds its table (about 12 MB at 10,000 services of
/// 4 real servers) and a few chunks of its text ([`serve::CHUNK`]); the
/// others wait for their turn. Above one, so that a client that stops reading (held up
/// to [`LIFETIME`]) does not stop Prometheus's scrapes.
pub const SCRAPES_AT_ONCE: usize = 4;

/// What every scrape of the exporter shares.
struct Exporter {
    /// The netlink handle (`None` after a read failed: opened anew).
    handle: Mutex<Option<Handle>>,
    /// The `--from-k8s` state file whose names label the services.
    state: PathBuf,
    /// `--metrics-families`.
    families: Families,
}

/// The answer to a request for `path` and `query`, made on a thread of
/// its own: the scrape on `/metrics` (of the families `query` asks,
/// [`asked`]; 400 when it asks for others), a short page on `/`, 404
/// elsewhere; 500 with the kernel's error when the table cannot be read
/// (the handle is opened anew for the next scrape). The handle is held
/// while the table is read, not while it is sent; the scrape's text is
/// streamed as it is encoded, gzip's when the request takes it.
fn answer(exporter: &Exporter, path: &str, query: &str, reply: Reply) {
    let text = |status, body: String| Plain {
        status,
        content_type: "text/plain; charset=utf-8",
        body,
    };
    match path {
        "/metrics" => {}
        "/" => {
            return reply.whole(text(
                200,
                "ipvsadm-rs --metrics: the IPVS table at /metrics\n".to_owned(),
            ))
        }
        _ => {
            return reply.whole(text(
                404,
                "not found: the metrics are at /metrics\n".to_owned(),
            ))
        }
    }
    let families = match asked(query, exporter.families) {
        Ok(families) => families,
        Err(message) => return reply.whole(text(400, format!("{message}\n"))),
    };
    if reply.is_gone() {
        return;
    }
    let read = {
        let mut slot = exporter.handle.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            match crate::init::open_handle() {
                Ok(h) => *slot = Some(h),
                Err(message) => return reply.whole(text(500, message)),
            }
        }
        let Some(h) = slot.as_mut() else {
            return reply.whole(text(500, "no IPVS handle\n".to_owned()));
        };
        let read = scrape(h, families);
        if read.is_err() {
            *slot = None;
        }
        read
    };
    match read {
        Ok(mut table) => {
            table.names = names(&exporter.state);
            // Compressed when the scraper takes it (Prometheus asks for
            // gzip unless its scrape config's `enable_compression` is off).
            let mut body = reply.stream_negotiated(200, metrics::CONTENT_TYPE);
            // An error is the client gone: the body is cut short.
            if metrics::encode(table, &mut body).is_ok() {
                let _ = body.finish();
            }
        }
        Err(e) => reply.whole(text(500, format!("{}\n", strerror::describe(&e)))),
    }
}

/// How long a connection may last: a scrape of a large table is tens of
/// MB (60 MB at 10,000 services of 4 real servers), more than the 5 s of
/// the health probes' lifetime takes to send on a slow link; Prometheus
/// gives up on its own after its `scrape_timeout` (10 s by default).
pub const LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

/// Serves `/metrics` on `listener` from `handle`'s table until killed,
/// with the `families` of `--metrics-families`, the services the
/// `--from-k8s` state file `state` (default: its default place) names
/// labelled with their names; the exit code when the server cannot start
/// (1), with its message.
pub fn run(
    listener: TcpListener,
    handle: Handle,
    state: Option<PathBuf>,
    families: Families,
) -> Result<(), String> {
    let exporter = Arc::new(Exporter {
        handle: Mutex::new(Some(handle)),
        state: state.unwrap_or_else(|| PathBuf::from(ipvs_k8s::ownership::DEFAULT_STATE)),
        families,
    });
    let limits = Limits {
        lifetime: LIFETIME,
        ..Limits::default()
    };
    serve::run(
        listener,
        limits,
        SCRAPES_AT_ONCE,
        move |path, query, reply| answer(&exporter, path, query, reply),
    )
    .map_err(|e| format!("--metrics: cannot serve: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_parameters_pick_among_the_served_families() {
        let all = Families::ALL;
        assert_eq!(asked("", all), Ok(all));
        assert_eq!(asked("name=x&collect=node", all), Ok(all));
        // As Prometheus sends `params: {collect[]: [node, kube-router]}`.
        let two = asked("collect%5B%5D=node&collect%5B%5D=kube-router", all).unwrap();
        assert_eq!(two.to_string(), "node,kube-router");
        assert_eq!(
            asked("collect[]=backend", all).unwrap().to_string(),
            "backend"
        );
        let served = Families::parse_list("service,kube-router").unwrap();
        assert_eq!(
            asked("collect[]=node", served),
            Err("collect[]: node asked, service,kube-router served (--metrics-families)".into())
        );
        assert!(asked("collect[]=nodes", all)
            .unwrap_err()
            .starts_with("collect[]: unknown family \"nodes\""));
    }

    /// What a scrape of 10,000 services of 4 real servers costs the
    /// exporter on this machine once the table is read: encoded, sent
    /// over loopback HTTP in chunks by the project's server (plain, and
    /// taking gzip in every other round), and read whole by a client on
    /// another thread (another core, as Prometheus on another machine),
    /// request to last byte; the netlink read is not in it (the VM's
    /// benchmark times the whole scrape beside `-Ln`).
    /// Run by hand: `cargo test --release -p ipvsadm-rs --features
    /// metrics --lib -- --ignored --nocapture cost_of_a_served_scrape`.
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn cost_of_a_served_scrape_of_10000_services() {
        use std::io::{Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            serve::run(listener, Limits::default(), 1, |_, _, reply| {
                let table = crate::format::metrics::tests::bench_table(10_000);
                let mut body = reply.stream_negotiated(200, metrics::CONTENT_TYPE);
                metrics::encode(table, &mut body).unwrap();
                body.finish().unwrap();
            })
            .unwrap();
        });
        for round in 0..6 {
            let gzip = round % 2 == 1;
            let start = std::time::Instant::now();
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            let accept = if gzip {
                "accept-encoding: gzip\r\n"
            } else {
                ""
            };
            s.write_all(format!("GET /metrics HTTP/1.1\r\nhost: x\r\n{accept}\r\n").as_bytes())
                .unwrap();
            let (mut bytes, mut buf) = (0usize, vec![0u8; 1 << 16]);
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                bytes += n;
            }
            let took = start.elapsed();
            // The table's 68,442,362 bytes of text with the chunks'
            // framing; taking gzip, a tenth or less.
            assert!(bytes > 68_442_362 || gzip && bytes < 6_844_236, "{bytes}");
            println!(
                "round {round}: served {}{:.3} s, {bytes} bytes on the wire",
                if gzip { "taking gzip " } else { "" },
                took.as_secs_f64()
            );
        }
    }
}
