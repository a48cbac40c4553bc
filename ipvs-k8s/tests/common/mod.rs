//! What the live mode's host tests share (each test file is a crate of
//! its own and takes this module with `mod common;`).

use std::path::Path;
use std::sync::Arc;

use ipvs_k8s::api::Gates;
use ipvs_k8s::live::{self, Log, Settings};
use ipvs_k8s::{self as k8s, Args};

/// The options of a live run in the test directory `dir`: node IP
/// 192.168.49.2, scheduler rr, the state file `dir/owned`, the fake API
/// server's kubeconfig at `dir/kubeconfig`; no node name, zone or flags.
pub fn live_args(dir: &Path) -> Args {
    Args {
        source: None,
        dry_run: false,
        node_ips: vec!["192.168.49.2".parse().unwrap()],
        node_name: None,
        node_zone: None,
        scheduler: "rr".to_owned(),
        state: dir.join("owned"),
        node: k8s::node::Options::default(),
        packet: k8s::packet::Options::default(),
        nodeport_addresses: None,
        cleanup: false,
        adopt: false,
        live: k8s::LiveArgs {
            kubeconfig: Some(dir.join("kubeconfig")),
            ..k8s::LiveArgs::default()
        },
    }
}

/// A current-thread runtime with I/O and time, as the live loop runs on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The live loop's API client as `live::run` makes it: the kubeconfig of
/// `args`, the deadlines and the gates (verbose) of `settings`; the gates
/// are returned for the loop.
pub async fn gated_client(args: &Args, settings: &Settings) -> (kube::Client, Arc<Gates>) {
    let config = live::config(args.live.kubeconfig.as_deref(), None)
        .await
        .unwrap();
    let gates = settings.gates(Log { verbose: true });
    let client = live::gated_client(config, settings, gates.clone()).unwrap();
    (client, gates)
}
