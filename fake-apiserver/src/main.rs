//! `fake-apiserver [ADDR:PORT] [DUMP.json]`: serves a dump (a List as
//! `kubectl get services,endpointslices -A -o json` prints it) with the
//! list and watch protocol of [`fake_apiserver`], until killed. Prints
//! its URL on stdout.

use std::io::Write;
use std::net::SocketAddr;

use fake_apiserver::{FakeApiServer, Kind};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr: SocketAddr = match args.first().map(|a| a.parse()) {
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(Ok(a)) => a,
        Some(Err(_)) => {
            eprintln!("usage: fake-apiserver [ADDR:PORT] [DUMP.json]");
            return 2.into();
        }
    };
    let server = match FakeApiServer::start_on(addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fake-apiserver: cannot listen on {addr}: {e}");
            return 1.into();
        }
    };
    if let Some(path) = args.get(1) {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("fake-apiserver: cannot read {path}: {e}");
                return 1.into();
            }
        };
        let dump: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("fake-apiserver: {path}: not JSON: {e}");
                return 1.into();
            }
        };
        let items = dump.get("items").and_then(|i| i.as_array()).cloned();
        for item in items.unwrap_or_else(|| vec![dump.clone()]) {
            let named = item.get("metadata").and_then(|m| m.get("name")).is_some();
            if Kind::of(&item).is_some() && named {
                server.apply(item);
            }
        }
    }
    println!("{}", server.url());
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}
