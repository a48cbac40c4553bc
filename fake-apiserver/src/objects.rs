//! Builders of the Kubernetes objects tests serve: a ClusterIP Service
//! and its EndpointSlice, as real JSON.

use serde_json::{json, Value};

/// A TCP ClusterIP Service `ns/name` at `ip` with `ports` (name, port;
/// the target port is the same number).
pub fn service(ns: &str, name: &str, ip: &str, ports: &[(&str, u16)]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p)| json!({"name": n, "port": p, "protocol": "TCP", "targetPort": p}))
        .collect();
    json!({
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {"namespace": ns, "name": name},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "ports": ports},
    })
}

/// The IPv4 EndpointSlice `ns/{svc}-{suffix}` of Service `svc`: TCP
/// `ports` (name, port) and one ready endpoint per address of `addrs`.
pub fn endpoint_slice(
    ns: &str,
    svc: &str,
    suffix: &str,
    ports: &[(&str, u16)],
    addrs: &[&str],
) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p)| json!({"name": n, "port": p, "protocol": "TCP"}))
        .collect();
    let eps: Vec<Value> = addrs
        .iter()
        .map(|a| json!({"addresses": [a], "conditions": {"ready": true}}))
        .collect();
    json!({
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {
            "namespace": ns,
            "name": format!("{svc}-{suffix}"),
            "labels": {"kubernetes.io/service-name": svc},
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": eps,
    })
}

/// The IPv4 EndpointSlice `default/{svc}-abcde` of Service `svc` as the
/// EndpointSlice controller writes it for pods on nodes: `ports` (name,
/// protocol, port) and one ready, serving endpoint per (address, node
/// name) of `eps`.
pub fn node_slice(svc: &str, ports: &[(&str, &str, u16)], eps: &[(&str, &str)]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, proto, p)| json!({"name": n, "port": p, "protocol": proto}))
        .collect();
    let eps: Vec<Value> = eps
        .iter()
        .map(|(a, node)| {
            json!({"addresses": [a], "conditions": {"ready": true, "serving": true, "terminating": false}, "nodeName": node})
        })
        .collect();
    json!({
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {"namespace": "default", "name": format!("{svc}-abcde"),
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": eps,
    })
}
