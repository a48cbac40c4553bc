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

/// The benchmarks' Service `i`'s ClusterIP: the table of the raw netlink
/// floor client (`../shared/reference/floor/nlfloor.c`), so that the
/// floor's time is for the same table: `10.(100+(i>>16)).(i>>8).(i&255)`.
pub fn bench_vip(i: usize) -> String {
    format!("10.{}.{}.{}", 100 + (i >> 16), (i >> 8) & 255, i & 255)
}

/// The benchmarks' Service `i`'s 4 endpoints, nlfloor's real servers:
/// `172.(16+k+16*(i>>16)).(i>>8).(i&255)`.
pub fn bench_endpoints(i: usize) -> Vec<String> {
    let (hi, mid, lo) = (i >> 16, (i >> 8) & 255, i & 255);
    (0..4)
        .map(|k| format!("172.{}.{mid}.{lo}", 16 + k + 16 * hi))
        .collect()
}

/// The benchmarks' Service `bench/svc-{i}` (port `http` 80 to 8080 at
/// [`bench_vip`]) and its EndpointSlice `bench/svc-{i}-abcde` of the 4
/// ready [`bench_endpoints`].
pub fn bench_objects(i: usize) -> (Value, Value) {
    let name = format!("svc-{i}");
    let ip = bench_vip(i);
    let service = json!({
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {"namespace": "bench", "name": name},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
        },
    });
    let eps: Vec<Value> = bench_endpoints(i)
        .into_iter()
        .map(|a| json!({"addresses": [a], "conditions": {"ready": true}}))
        .collect();
    let slice = json!({
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {
            "namespace": "bench",
            "name": format!("{name}-abcde"),
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps,
    });
    (service, slice)
}

/// The benchmarks' cluster: [`bench_objects`] of Services `0..services`,
/// in one batch.
pub fn bench_cluster(services: usize) -> crate::Batch {
    let mut b = crate::Batch::default();
    for i in 0..services {
        let (service, slice) = bench_objects(i);
        b.apply(service).apply(slice);
    }
    b
}
