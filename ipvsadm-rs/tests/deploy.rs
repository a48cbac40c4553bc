//! The manifests of `deploy/`: each one read into its k8s-openapi type and
//! written back must give the source again (as JSON values), so that a
//! misspelt or misplaced field fails here instead of being dropped by the
//! API server; and what they grant and run is checked.
#![cfg(feature = "k8s-file")]

use std::path::PathBuf;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

fn deploy(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

/// Reads `file` as `T` and checks that writing it back loses nothing.
fn round_trip<T: DeserializeOwned + Serialize>(file: &str) -> T {
    let text = std::fs::read_to_string(deploy(file)).unwrap();
    let source: Value = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let typed: T = serde_json::from_value(source.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
    let again = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        again,
        source,
        "{file} does not survive its type: a misspelt or misplaced field?\nre-serialised:\n{}",
        serde_json::to_string_pretty(&again).unwrap()
    );
    typed
}

#[test]
fn every_manifest_survives_its_type() {
    round_trip::<ServiceAccount>("serviceaccount.yaml");
    round_trip::<ClusterRole>("clusterrole.yaml");
    round_trip::<ClusterRoleBinding>("clusterrolebinding.yaml");
    round_trip::<DaemonSet>("daemonset.yaml");
    let yamls: Vec<String> = std::fs::read_dir(deploy(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    assert_eq!(
        yamls.len(),
        4,
        "a manifest this test does not read: {yamls:?}"
    );
}

#[test]
fn a_misspelt_field_is_caught() {
    let text = std::fs::read_to_string(deploy("daemonset.yaml"))
        .unwrap()
        .replace("hostNetwork: true", "hostNetwrok: true");
    let source: Value = serde_yaml_ng::from_str(&text).unwrap();
    let typed: DaemonSet = serde_json::from_value(source.clone()).unwrap();
    assert_ne!(serde_json::to_value(&typed).unwrap(), source);
}

#[test]
fn the_role_grants_list_and_watch_of_services_and_endpointslices_and_get_of_nodes_only() {
    let role: ClusterRole = round_trip("clusterrole.yaml");
    assert!(role.aggregation_rule.is_none());
    let mut grants: Vec<(Vec<String>, Vec<String>, Vec<String>)> = role
        .rules
        .unwrap()
        .into_iter()
        .map(|r| {
            assert!(r.resource_names.is_none() && r.non_resource_urls.is_none());
            let mut verbs = r.verbs;
            verbs.sort();
            (r.api_groups.unwrap(), r.resources.unwrap(), verbs)
        })
        .collect();
    grants.sort();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        grants,
        vec![
            (s(&[""]), s(&["nodes"]), s(&["get"])),
            (s(&[""]), s(&["services"]), s(&["list", "watch"])),
            (
                s(&["discovery.k8s.io"]),
                s(&["endpointslices"]),
                s(&["list", "watch"])
            ),
        ]
    );
}

#[test]
fn the_binding_gives_the_role_to_the_daemonsets_account() {
    let account: ServiceAccount = round_trip("serviceaccount.yaml");
    let role: ClusterRole = round_trip("clusterrole.yaml");
    let binding: ClusterRoleBinding = round_trip("clusterrolebinding.yaml");
    let ds: DaemonSet = round_trip("daemonset.yaml");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(binding.role_ref.api_group, "rbac.authorization.k8s.io");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let subjects = binding.subjects.unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(Some(&subjects[0].name), account.metadata.name.as_ref());
    assert_eq!(subjects[0].namespace, account.metadata.namespace);
    assert_eq!(ds.metadata.namespace, account.metadata.namespace);
    let pod = ds.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name, account.metadata.name);
}

#[test]
fn the_daemonset_runs_the_live_sync_on_the_nodes_network_with_net_admin_only() {
    let ds: DaemonSet = round_trip("daemonset.yaml");
    let spec = ds.spec.unwrap();
    let labels = spec.template.metadata.unwrap().labels.unwrap();
    for (k, v) in spec.selector.match_labels.unwrap() {
        assert_eq!(labels.get(&k), Some(&v), "the selector matches the pods");
    }
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    // Its arguments are a --from-k8s command line this binary accepts.
    let args = c.args.clone().unwrap();
    let parsed = ipvsadm_rs::cli::from_k8s::parse(&args)
        .expect("starts with --from-k8s")
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert_eq!(parsed.source, None, "the live mode: no dump");
    assert!(!parsed.dry_run);
    assert_eq!(parsed.node_name.as_deref(), Some("$(NODE_NAME)"));
    assert_eq!(parsed.node.interface, "kube-ipvs0");
    // Localhost NodePorts stay off (route_localnet's risk: issue 30).
    assert!(!parsed.packet.localhost_nodeports);
    // The node's name from the downward API.
    let env = c.env.clone().unwrap();
    let node_name = env.iter().find(|e| e.name == "NODE_NAME").unwrap();
    let field = node_name
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .unwrap();
    assert_eq!(field.field_path, "spec.nodeName");
    // NET_ADMIN and nothing else; not privileged.
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let caps = sc.capabilities.unwrap();
    assert_eq!(caps.add.unwrap(), vec!["NET_ADMIN".to_owned()]);
    assert_eq!(caps.drop.unwrap(), vec!["ALL".to_owned()]);
    // The state file is on a hostPath, so it outlives the pod.
    let state_dir = parsed.state.parent().unwrap().to_str().unwrap().to_owned();
    let mount = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.mount_path == state_dir)
        .unwrap_or_else(|| panic!("no volume at {state_dir}"));
    let volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == mount.name)
        .unwrap();
    assert!(volume.host_path.is_some(), "{volume:?}");
}

/// The image is the root file system scripts/package.sh assembles (and
/// runs in the VM): the Containerfile copies that directory, its build
/// context, and starts the binary package.sh puts at its root.
#[test]
fn the_container_file_takes_the_packaged_root_file_system() {
    let text = std::fs::read_to_string(deploy("Containerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines,
        ["FROM scratch", "COPY . /", "ENTRYPOINT [\"/ipvsadm-rs\"]"]
    );
    assert!(text.contains("-t ipvsadm-rs:0.1.0 target/dist/rootfs\n"));
    let package = std::fs::read_to_string(deploy("../scripts/package.sh")).unwrap();
    assert!(package.contains("rootfs=$dist/rootfs\n"));
    assert!(package.contains("dist=target/dist\n"));
    assert!(package.contains("install -m 0755 \"$bin\" \"$rootfs/ipvsadm-rs\"\n"));
    assert!(package.contains("scripts/build-static.sh --features k8s"));
}
