//! The mapping on dumps written as `kubectl get services,endpointslices
//! -A -o json` prints them (ipvs-k8s/tests/dumps/*.json), shown as the restore lines
//! that would create the desired table.

use super::*;
use ipvs_netlink::Op;
use ipvsadm_compat::rules::op_line;

const TYPES: &str = include_str!("../../tests/dumps/types.json");
const DUALSTACK: &str = include_str!("../../tests/dumps/dualstack.json");
const ENDPOINTS: &str = include_str!("../../tests/dumps/endpoints.json");

fn node() -> Node {
    Node {
        ips: vec!["192.168.49.2".parse().unwrap()],
        name: Some("node-a".to_owned()),
        zone: Some("zone-a".to_owned()),
        scheduler: "rr".to_owned(),
    }
}

/// The desired table as restore lines, each service followed by its
/// real servers.
fn table(m: &Mapped) -> String {
    let mut out = String::new();
    for d in &m.desired {
        out.push_str(&op_line(&Op::AddService(d.server.service.clone())));
        out.push('\n');
        for r in &d.server.dests {
            out.push_str(&op_line(&Op::AddDestination(
                d.server.service.id,
                r.clone(),
            )));
            out.push('\n');
        }
    }
    out
}

fn mapped(text: &str, node: &Node) -> Mapped {
    let m = map(&read_objects(text).unwrap(), node);
    assert!(m.problems.is_empty(), "{:?}", m.problems);
    m
}

/// The part of `table` about the services on these addresses.
fn only(m: &Mapped, vips: &[&str]) -> String {
    let keep: Vec<Desired> = m
        .desired
        .iter()
        .filter(|d| match d.server.service.id {
            ServiceId::Inet { addr, port, .. } => {
                vips.contains(&SocketAddr::new(addr, port).to_string().as_str())
            }
            ServiceId::Fwmark { .. } => false,
        })
        .cloned()
        .collect();
    table(&Mapped {
        desired: keep,
        ..Mapped::default()
    })
}

#[test]
fn each_service_type() {
    let m = mapped(TYPES, &node());
    assert_eq!(
        table(&m),
        "\
-A -t 10.96.0.1:443 -s rr
-a -t 10.96.0.1:443 -r 192.168.49.2:8443 -m -w 1
-A -t 10.96.20.20:443 -s rr
-a -t 10.96.20.20:443 -r 10.244.1.9:8443 -m -w 1
-A -t 203.0.113.7:443 -s rr
-a -t 203.0.113.7:443 -r 10.244.1.9:8443 -m -w 1
-A -t 198.51.100.10:443 -s rr
-a -t 198.51.100.10:443 -r 10.244.1.9:8443 -m -w 1
-A -t 192.168.49.2:31443 -s rr
-a -t 192.168.49.2:31443 -r 10.244.1.9:8443 -m -w 1
-A -t 10.96.21.21:80 -s rr
-a -t 10.96.21.21:80 -r 10.244.2.10:80 -m -w 1
-A -t 198.51.100.12:80 -s rr
-a -t 198.51.100.12:80 -r 10.244.2.10:80 -m -w 1
-A --sctp-service 10.96.22.22:9999 -s rr
-a --sctp-service 10.96.22.22:9999 -r 10.244.2.11:9999 -m -w 1
-A -t 10.96.10.10:80 -s rr
-a -t 10.96.10.10:80 -r 10.244.1.5:8080 -m -w 1
-a -t 10.96.10.10:80 -r 10.244.2.7:8080 -m -w 1
-A -t 192.168.49.2:30080 -s rr
-a -t 192.168.49.2:30080 -r 10.244.1.5:8080 -m -w 1
-a -t 192.168.49.2:30080 -r 10.244.2.7:8080 -m -w 1
-A -u 10.96.0.10:53 -s rr
-a -u 10.96.0.10:53 -r 10.244.0.2:53 -m -w 1
-a -u 10.96.0.10:53 -r 10.244.0.3:53 -m -w 1
-A -t 10.96.0.10:53 -s rr
-a -t 10.96.0.10:53 -r 10.244.0.2:53 -m -w 1
-a -t 10.96.0.10:53 -r 10.244.0.3:53 -m -w 1
-A -t 10.96.0.10:9153 -s rr
-a -t 10.96.0.10:9153 -r 10.244.0.2:9153 -m -w 1
-a -t 10.96.0.10:9153 -r 10.244.0.3:9153 -m -w 1
"
    );
    assert_eq!(m.warnings, Vec::<String>::new());
    // Where each virtual service comes from.
    let origins: Vec<&str> = m.desired.iter().map(|d| d.origin.as_str()).collect();
    assert_eq!(origins[0], "default/kubernetes:https");
    assert_eq!(origins[5], "default/lb-no-nodeports:80");
    assert_eq!(origins[12], "kube-system/kube-dns:metrics");
}

#[test]
fn skipped_kinds_leave_nothing() {
    // ExternalName, headless (ClusterIP None), no ClusterIP, and the
    // Service handed to another proxy: none of their addresses appear.
    let m = mapped(TYPES, &node());
    let text = table(&m);
    for absent in ["10.96.30.30", "10.244.1.30", "10.244.1.31", ":5432"] {
        assert!(!text.contains(absent), "{absent} in\n{text}");
    }
    // The LoadBalancer's Proxy-mode and hostname-only ingresses are not
    // virtual services; nor is the nodePort of a LoadBalancer with
    // allocateLoadBalancerNodePorts false.
    assert!(!text.contains("198.51.100.11"));
    assert!(!text.contains(":30999"));
}

#[test]
fn no_node_addresses_no_nodeports() {
    let m = mapped(
        TYPES,
        &Node {
            ips: Vec::new(),
            ..node()
        },
    );
    assert!(!table(&m).contains("192.168.49.2:3"));
}

#[test]
fn dual_stack_maps_each_family_to_its_own_endpoints() {
    let node = Node {
        ips: vec!["192.168.49.2".parse().unwrap(), "fd00::2".parse().unwrap()],
        ..node()
    };
    let m = mapped(DUALSTACK, &node);
    assert_eq!(
        table(&m),
        "\
-A -t 10.96.40.40:80 -s rr
-a -t 10.96.40.40:80 -r 10.244.1.40:8080 -m -w 1
-a -t 10.96.40.40:80 -r 10.244.2.40:8080 -m -w 1
-A -t 203.0.113.8:80 -s rr
-a -t 203.0.113.8:80 -r 10.244.1.40:8080 -m -w 1
-a -t 203.0.113.8:80 -r 10.244.2.40:8080 -m -w 1
-A -t 192.168.49.2:30400 -s rr
-a -t 192.168.49.2:30400 -r 10.244.1.40:8080 -m -w 1
-a -t 192.168.49.2:30400 -r 10.244.2.40:8080 -m -w 1
-A -t [fd00:10:96::4040]:80 -s rr
-a -t [fd00:10:96::4040]:80 -r [fd00:10:244:1::40]:8080 -m -w 1
-a -t [fd00:10:96::4040]:80 -r [fd00:10:244:2::40]:8080 -m -w 1
-A -t [2001:db8::8]:80 -s rr
-a -t [2001:db8::8]:80 -r [fd00:10:244:1::40]:8080 -m -w 1
-a -t [2001:db8::8]:80 -r [fd00:10:244:2::40]:8080 -m -w 1
-A -t [fd00::2]:30400 -s rr
-a -t [fd00::2]:30400 -r [fd00:10:244:1::40]:8080 -m -w 1
-a -t [fd00::2]:30400 -r [fd00:10:244:2::40]:8080 -m -w 1
-A -t [fd00:10:96::5050]:443 -s rr
-a -t [fd00:10:96::5050]:443 -r [fd00:10:244:1::50]:8443 -m -w 1
-A -t [2001:db8::9]:443 -s rr
-a -t [2001:db8::9]:443 -r [fd00:10:244:1::50]:8443 -m -w 1
"
    );
    // The IPv6-only Service's IPv4 externalIP is another family's: left
    // out, as kube-proxy's IPv4 proxier never sees that Service.
    assert!(!table(&m).contains("203.0.113.9"));
}

#[test]
fn client_ip_affinity_is_persistence_with_the_default_timeout() {
    let m = mapped(ENDPOINTS, &node());
    assert_eq!(
        only(&m, &["10.96.50.1:80", "10.96.50.2:80"]),
        "\
-A -t 10.96.50.1:80 -s rr -p 10800
-a -t 10.96.50.1:80 -r 10.244.1.50:8080 -m -w 1
-A -t 10.96.50.2:80 -s rr -p 600
-a -t 10.96.50.2:80 -r 10.244.1.51:8080 -m -w 1
"
    );
}

#[test]
fn ready_endpoints_only_and_serving_terminating_when_none_is_ready() {
    let m = mapped(ENDPOINTS, &node());
    // One ready, one not ready, one serving and terminating, one neither:
    // only the ready one.
    assert_eq!(
        only(&m, &["10.96.51.1:80"]),
        "-A -t 10.96.51.1:80 -s rr\n-a -t 10.96.51.1:80 -r 10.244.1.60:8080 -m -w 1\n"
    );
    // None ready: the serving and terminating one, not the others.
    assert_eq!(
        only(&m, &["10.96.51.2:80"]),
        "-A -t 10.96.51.2:80 -s rr\n-a -t 10.96.51.2:80 -r 10.244.1.70:8080 -m -w 1\n"
    );
    // No endpoints at all: the service, without real servers.
    assert_eq!(only(&m, &["10.96.56.1:80"]), "-A -t 10.96.56.1:80 -s rr\n");
}

#[test]
fn overlapping_slices_count_an_endpoint_once_and_fqdn_slices_are_ignored() {
    let m = mapped(ENDPOINTS, &node());
    assert_eq!(
        only(&m, &["10.96.52.1:80", "10.96.53.1:80"]),
        "\
-A -t 10.96.53.1:80 -s rr
-a -t 10.96.53.1:80 -r 10.244.1.90:80 -m -w 1
-A -t 10.96.52.1:80 -s rr
-a -t 10.96.52.1:80 -r 10.244.1.80:8080 -m -w 1
-a -t 10.96.52.1:80 -r 10.244.1.81:8080 -m -w 1
-a -t 10.96.52.1:80 -r 10.244.2.82:8080 -m -w 1
"
    );
}

#[test]
fn named_target_ports_resolve_per_slice() {
    // targetPort "http" is 8080 on one pod and 9090 on another; the
    // slices carry the numbers under the Service port's name.
    let m = mapped(ENDPOINTS, &node());
    assert_eq!(
        only(&m, &["10.96.54.1:80", "10.96.54.1:9000"]),
        "\
-A -t 10.96.54.1:80 -s rr
-a -t 10.96.54.1:80 -r 10.244.1.100:8080 -m -w 1
-a -t 10.96.54.1:80 -r 10.244.2.101:9090 -m -w 1
-A -t 10.96.54.1:9000 -s rr
-a -t 10.96.54.1:9000 -r 10.244.1.100:9000 -m -w 1
-a -t 10.96.54.1:9000 -r 10.244.2.101:9000 -m -w 1
"
    );
}

#[test]
fn traffic_policies_local_keep_the_nodes_own_endpoints() {
    let m = mapped(ENDPOINTS, &node());
    // externalTrafficPolicy Local: the ClusterIP keeps every endpoint,
    // the externalIP and the NodePort only node-a's.
    assert_eq!(
        only(
            &m,
            &["10.96.55.1:80", "203.0.113.55:80", "192.168.49.2:30551"]
        ),
        "\
-A -t 10.96.55.1:80 -s rr
-a -t 10.96.55.1:80 -r 10.244.1.110:8080 -m -w 1
-a -t 10.96.55.1:80 -r 10.244.2.111:8080 -m -w 1
-A -t 203.0.113.55:80 -s rr
-a -t 203.0.113.55:80 -r 10.244.1.110:8080 -m -w 1
-A -t 192.168.49.2:30551 -s rr
-a -t 192.168.49.2:30551 -r 10.244.1.110:8080 -m -w 1
"
    );
    // internalTrafficPolicy Local: the other way round.
    assert_eq!(
        only(&m, &["10.96.55.2:80", "192.168.49.2:30552"]),
        "\
-A -t 10.96.55.2:80 -s rr
-a -t 10.96.55.2:80 -r 10.244.1.120:8080 -m -w 1
-A -t 192.168.49.2:30552 -s rr
-a -t 192.168.49.2:30552 -r 10.244.1.120:8080 -m -w 1
-a -t 192.168.49.2:30552 -r 10.244.2.121:8080 -m -w 1
"
    );
    // The local endpoint is terminating (still serving), a remote one is
    // ready: Local uses the local serving-terminating one, Cluster the
    // ready one.
    assert_eq!(
        only(&m, &["10.96.55.3:80", "192.168.49.2:30553"]),
        "\
-A -t 10.96.55.3:80 -s rr
-a -t 10.96.55.3:80 -r 10.244.2.131:8080 -m -w 1
-A -t 192.168.49.2:30553 -s rr
-a -t 192.168.49.2:30553 -r 10.244.1.130:8080 -m -w 1
"
    );
    // No endpoint on this node: the NodePort has no real server.
    assert_eq!(
        only(&m, &["192.168.49.2:30554"]),
        "-A -t 192.168.49.2:30554 -s rr\n"
    );
}

#[test]
fn without_a_node_name_no_endpoint_is_local() {
    let m = mapped(
        ENDPOINTS,
        &Node {
            name: None,
            ..node()
        },
    );
    assert_eq!(
        only(&m, &["192.168.49.2:30551"]),
        "-A -t 192.168.49.2:30551 -s rr\n"
    );
}

#[test]
fn the_scheduler_is_the_nodes_and_mh_hashes_the_port_too() {
    let m = mapped(
        ENDPOINTS,
        &Node {
            scheduler: "mh".to_owned(),
            ..node()
        },
    );
    assert_eq!(
        only(&m, &["10.96.56.1:80"]),
        "-A -t 10.96.56.1:80 -s mh -b mh-port\n"
    );
}

/// The per-Service scheduler annotations, ours and kube-router's: each
/// case a Service's annotations, the node's `-s`, the virtual service the
/// mapping writes (as its restore line) and the warning it gives (the
/// accepted values are kube-router's: pkg/controllers/proxy
/// `buildServicesInfo` and `parseSchedFlags`; ours are ipvsadm's `-s`
/// and `-b`).
#[test]
fn scheduler_annotations_ours_and_kube_routers() {
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        // No annotation: the node's scheduler (mh with its port flag, as
        // kube-proxy).
        (r#"{}"#, "rr", "-s rr", None),
        (r#"{}"#, "mh", "-s mh -b mh-port", None),
        // kube-router's: each scheduler it accepts.
        (r#"{"kube-router.io/service.scheduler":"lc"}"#, "rr", "-s lc", None),
        (r#"{"kube-router.io/service.scheduler":"dh"}"#, "rr", "-s dh", None),
        (r#"{"kube-router.io/service.scheduler":"sh"}"#, "rr", "-s sh", None),
        (r#"{"kube-router.io/service.scheduler":"wrr"}"#, "rr", "-s wrr", None),
        (r#"{"kube-router.io/service.scheduler":"wlc"}"#, "rr", "-s wlc", None),
        (r#"{"kube-router.io/service.scheduler":"rr"}"#, "wlc", "-s rr", None),
        // mh: no flag unless asked (kube-router sets none by itself).
        (r#"{"kube-router.io/service.scheduler":"mh"}"#, "rr", "-s mh", None),
        (
            r#"{"kube-router.io/service.scheduler":"mh","kube-router.io/service.schedflags":"flag-1,flag-2"}"#,
            "rr",
            "-s mh -b mh-fallback,mh-port",
            None,
        ),
        (
            r#"{"kube-router.io/service.scheduler":"mh","kube-router.io/service.schedflags":" flag-2 "}"#,
            "rr",
            "-s mh -b mh-port",
            None,
        ),
        // A bad value: the default, and a warning naming the Service.
        (
            r#"{"kube-router.io/service.scheduler":"fastest"}"#,
            "rr",
            "-s rr",
            Some(r#"Service shop/web: annotation kube-router.io/service.scheduler "fastest": not a scheduler kube-router accepts (rr, lc, dh, sh, mh, wrr, wlc): the default scheduler is used"#),
        ),
        (
            r#"{"kube-router.io/service.scheduler":"RR"}"#,
            "wlc",
            "-s wlc",
            Some("not a scheduler kube-router accepts"),
        ),
        (
            r#"{"kube-router.io/service.scheduler":"sh","kube-router.io/service.schedflags":"flag-1"}"#,
            "rr",
            "-s sh",
            Some("used only with the scheduler mh (as kube-router), not sh: ignored"),
        ),
        (
            r#"{"kube-router.io/service.scheduler":"mh","kube-router.io/service.schedflags":"flag-2,port"}"#,
            "rr",
            "-s mh -b mh-port",
            Some(r#""port" is not flag-1, flag-2 or flag-3: skipped (as kube-router skips it)"#),
        ),
        // Flags without kube-router's scheduler: nothing to go with.
        (r#"{"kube-router.io/service.schedflags":"flag-1"}"#, "rr", "-s rr", None),
        // Ours: any of ipvsadm's schedulers, ipvsadm's flag names.
        (r#"{"ipvsadm-rs.io/scheduler":"sed"}"#, "rr", "-s sed", None),
        (r#"{"ipvsadm-rs.io/scheduler":"mh"}"#, "rr", "-s mh -b mh-port", None),
        (
            r#"{"ipvsadm-rs.io/scheduler":"mh","ipvsadm-rs.io/sched-flags":""}"#,
            "rr",
            "-s mh",
            None,
        ),
        (
            r#"{"ipvsadm-rs.io/scheduler":"sh","ipvsadm-rs.io/sched-flags":"sh-fallback,sh-port"}"#,
            "rr",
            "-s sh -b sh-fallback,sh-port",
            None,
        ),
        // Ours win over kube-router's.
        (
            r#"{"ipvsadm-rs.io/scheduler":"wlc","kube-router.io/service.scheduler":"lc"}"#,
            "rr",
            "-s wlc",
            None,
        ),
        (
            r#"{"ipvsadm-rs.io/scheduler":"nope","kube-router.io/service.scheduler":"lc"}"#,
            "rr",
            "-s rr",
            Some(r#"annotation ipvsadm-rs.io/scheduler "nope": not a scheduler (rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos): the default scheduler is used"#),
        ),
        (
            r#"{"ipvsadm-rs.io/scheduler":"sh","ipvsadm-rs.io/sched-flags":"mh-port"}"#,
            "rr",
            "-s sh",
            Some("mh-port is a flag of the scheduler mh, not of sh: the default flags are used"),
        ),
        (
            r#"{"ipvsadm-rs.io/scheduler":"rr","ipvsadm-rs.io/sched-flags":"flag-9"}"#,
            "rr",
            "-s rr",
            Some(r#""flag-9" is not a scheduler flag"#),
        ),
        (
            r#"{"ipvsadm-rs.io/sched-flags":"flag-1"}"#,
            "rr",
            "-s rr",
            Some("annotation ipvsadm-rs.io/sched-flags \"flag-1\": needs ipvsadm-rs.io/scheduler beside it: ignored"),
        ),
        // A control character in a value is escaped in the warning.
        (
            r#"{"kube-router.io/service.scheduler":"rr\nFAKE"}"#,
            "rr",
            "-s rr",
            Some(r#""rr\\nFAKE""#),
        ),
    ];
    for (annotations, default, want, warning) in cases {
        let dump = format!(
            r#"{{"kind":"List","apiVersion":"v1","items":[{{"apiVersion":"v1","kind":"Service",
            "metadata":{{"name":"web","namespace":"shop","annotations":{annotations}}},
            "spec":{{"clusterIP":"10.96.1.1","type":"NodePort","ports":[{{"port":80,"nodePort":30080}}]}}}}]}}"#
        );
        let m = mapped(
            &dump,
            &Node {
                scheduler: (*default).to_owned(),
                ..node()
            },
        );
        // Every virtual service of the Service (ClusterIP and NodePort).
        assert_eq!(
            table(&m),
            format!("-A -t 10.96.1.1:80 {want}\n-A -t 192.168.49.2:30080 {want}\n"),
            "{annotations} with -s {default}"
        );
        match warning {
            None => assert!(m.warnings.is_empty(), "{annotations}: {:?}", m.warnings),
            Some(w) => {
                assert_eq!(m.warnings.len(), 1, "{annotations}: {:?}", m.warnings);
                assert!(m.warnings[0].contains(w), "{annotations}: {:?}", m.warnings);
            }
        }
    }
}

#[test]
fn two_services_wanting_one_address_keep_the_first_and_say_so() {
    let two = r#"{"apiVersion":"v1","kind":"List","items":[
      {"apiVersion":"v1","kind":"Service","metadata":{"name":"b","namespace":"default"},
       "spec":{"clusterIP":"10.96.1.2","externalIPs":["203.0.113.1"],"ports":[{"port":80}]}},
      {"apiVersion":"v1","kind":"Service","metadata":{"name":"a","namespace":"default"},
       "spec":{"clusterIP":"10.96.1.1","externalIPs":["203.0.113.1"],"ports":[{"port":80}]}}]}"#;
    let m = mapped(two, &node());
    assert_eq!(
        table(&m),
        "-A -t 10.96.1.1:80 -s rr\n-A -t 203.0.113.1:80 -s rr\n-A -t 10.96.1.2:80 -s rr\n"
    );
    assert_eq!(
        m.warnings,
        vec!["TCP 203.0.113.1:80 is wanted by default/a:80 and by default/b:80: kept default/a:80"]
    );
}

#[test]
fn special_addresses_are_not_proxied_and_named_in_a_warning() {
    let service = |name: &str, ip: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"{name}","namespace":"x"}},
             "spec":{{"clusterIP":"{ip}","ports":[{{"port":80}}]}}}}"#
        )
    };
    let cases = [
        ("any", "0.0.0.0", "the unspecified address"),
        ("lo", "127.0.0.1", "a loopback address"),
        ("lo8", "127.8.9.10", "a loopback address"),
        ("bcast", "255.255.255.255", "the broadcast address"),
        ("mcast", "224.0.0.1", "a multicast address"),
        ("any6", "::", "the unspecified address"),
        ("lo6", "::1", "a loopback address"),
        ("mcast6", "ff02::1", "a multicast address"),
        ("mapped", "::ffff:10.96.0.1", "an IPv4-mapped address"),
    ];
    let mut items: Vec<String> = cases.iter().map(|(n, ip, _)| service(n, ip)).collect();
    items.push(
        r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"ok","namespace":"x"},
          "spec":{"clusterIP":"10.96.1.1","externalIPs":["127.0.0.2","203.0.113.9"],"ports":[{"port":80}]}}"#
            .to_owned(),
    );
    let text = format!(r#"{{"kind":"List","items":[{}]}}"#, items.join(","));
    let m = mapped(&text, &node());
    assert_eq!(
        table(&m),
        "-A -t 10.96.1.1:80 -s rr\n-A -t 203.0.113.9:80 -s rr\n"
    );
    let mut want: Vec<String> = cases
        .iter()
        .map(|(n, ip, why)| format!("Service x/{n}: ClusterIP {ip} is {why}: not proxied"))
        .collect();
    want.push("Service x/ok: externalIP 127.0.0.2 is a loopback address: not proxied".to_owned());
    let mut got = m.warnings.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn other_kinds_are_ignored_and_a_single_object_reads_as_a_list() {
    let text = r#"{"kind":"List","apiVersion":"v1","items":[
      {"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}},
      {"apiVersion":"v1","kind":"Endpoints","metadata":{"name":"e"}},
      {"apiVersion":"v1","kind":"Pod","metadata":{"name":"q"}}]}"#;
    let o = read_objects(text).unwrap();
    assert!(o.services.is_empty() && o.slices.is_empty());
    assert_eq!(o.ignored_kinds, vec!["Endpoints", "Pod"]);
    let one = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},
      "spec":{"clusterIP":"10.96.1.1","ports":[{"port":80}]}}"#;
    assert_eq!(table(&mapped(one, &node())), "-A -t 10.96.1.1:80 -s rr\n");
    assert_eq!(
        read_objects(r#"{"kind":"List","items":null}"#)
            .unwrap()
            .services
            .len(),
        0
    );
}

/// The error a garbage dump gives (reading), or the problem of its one
/// Service (mapping: the Service is skipped, nothing of it is desired).
fn garbage(text: &str) -> String {
    match read_objects(text).map(|o| map(&o, &node())) {
        Ok(m) => {
            assert!(m.desired.is_empty(), "{}", table(&m));
            match &m.problems[..] {
                [one] => one.to_string(),
                other => panic!("not one problem: {other:?}"),
            }
        }
        Err(e) => e,
    }
}

fn one_service(spec: &str) -> String {
    format!(
        r#"{{"kind":"List","apiVersion":"v1","items":[{{"apiVersion":"v1","kind":"Service",
        "metadata":{{"name":"web","namespace":"shop"}},"spec":{spec}}}]}}"#
    )
}

fn one_slice(body: &str) -> String {
    format!(
        r#"{{"kind":"List","apiVersion":"v1","items":[
        {{"apiVersion":"v1","kind":"Service","metadata":{{"name":"web","namespace":"shop"}},
          "spec":{{"clusterIP":"10.96.1.1","ports":[{{"port":80}}]}}}},
        {{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
          "metadata":{{"name":"web-1","namespace":"shop","labels":{{"kubernetes.io/service-name":"web"}}}},
          {body}}}]}}"#
    )
}

#[test]
fn garbage_gives_an_error_naming_the_object() {
    assert!(garbage("").starts_with("not JSON: "));
    assert!(garbage("{\"items\": [").starts_with("not JSON: "));
    assert_eq!(
        garbage("[]"),
        "not a JSON object: expected a List as kubectl prints it"
    );
    assert_eq!(garbage(r#"{"items": {}}"#), "`items` is not an array");
    assert_eq!(
        garbage(r#"{"metadata": {}}"#),
        "neither a List (no `items`) nor an API object (no `kind`)"
    );
    assert_eq!(
        garbage(r#"{"items": [{"metadata": {"name": "x"}}]}"#),
        "item x: no `kind`"
    );
    assert_eq!(
        garbage(r#"{"items": [{"kind": 7}]}"#),
        "item (item 0, no metadata.name): `kind` is not a string"
    );
    // Wrong types and missing fields, as serde finds them.
    assert_eq!(
        garbage(&one_service(
            r#"{"clusterIP":"10.96.1.1","ports":[{"port":"80"}]}"#
        )),
        "Service shop/web: invalid type: string \"80\", expected i32"
    );
    assert_eq!(
        garbage(&one_service(
            r#"{"clusterIP":"10.96.1.1","ports":[{"name":"http"}]}"#
        )),
        "Service shop/web: port 0 is not a port number: skipped"
    );
    assert_eq!(
        garbage(&one_service(
            r#"{"clusterIP":"10.96.1.1","ports":{"port":80}}"#
        )),
        "Service shop/web: invalid type: map, expected a sequence"
    );
    assert_eq!(
        garbage(&one_service(r#""ClusterIP""#)),
        "Service shop/web: invalid type: string \"ClusterIP\", expected ServiceSpec"
    );
    let wrong_version = one_service("{}").replace(
        r#""apiVersion":"v1","kind":"Service""#,
        r#""apiVersion":"v2","kind":"Service""#,
    );
    assert_eq!(
        garbage(&wrong_version),
        "Service shop/web: invalid value: string \"v2\", expected v1"
    );
    // Values of the right type that make no sense.
    assert_eq!(
        garbage(&one_service(
            r#"{"clusterIP":"10.96.1.300","ports":[{"port":80}]}"#
        )),
        "Service shop/web: ClusterIP \"10.96.1.300\" is not an IP address: skipped"
    );
    assert_eq!(
        garbage(&one_service(
            r#"{"clusterIP":"10.96.1.1","ports":[{"port":80,"protocol":"ICMP"}]}"#
        )),
        "Service shop/web: port 80: unknown protocol \"ICMP\": skipped"
    );
    assert_eq!(
        garbage(&one_service(
            r#"{"clusterIP":"10.96.1.1","ports":[{"port":70000}]}"#
        )),
        "Service shop/web: port 70000 is not a port number: skipped"
    );
    assert_eq!(
        garbage(&one_service(
            r#"{"clusterIP":"10.96.1.1","type":"NodePort","ports":[{"port":80,"nodePort":-1}]}"#
        )),
        "Service shop/web: nodePort -1 is not a port number: skipped"
    );
    assert_eq!(
        garbage(&one_service(
            r#"{"clusterIP":"10.96.1.1","ports":[{"port":80}],"sessionAffinity":"ClientIP",
               "sessionAffinityConfig":{"clientIP":{"timeoutSeconds":0}}}"#
        )),
        "Service shop/web: sessionAffinityConfig.clientIP.timeoutSeconds 0 is not within 1 to 86400: skipped"
    );
    assert_eq!(
        garbage(&one_service(
            r#"{"clusterIP":"10.96.1.1","ports":[{"port":80}],"sessionAffinity":"Cookie"}"#
        )),
        "Service shop/web: unknown sessionAffinity \"Cookie\": skipped"
    );
    assert_eq!(
        garbage(&one_service(
            r#"{"clusterIP":"10.96.1.1","ports":[{"port":80}],"externalIPs":["example.com"]}"#
        )),
        "Service shop/web: externalIP \"example.com\" is not an IP address: skipped"
    );
    // EndpointSlices.
    assert_eq!(
        garbage(&one_slice(r#""endpoints":[]"#)),
        "Service shop/web: EndpointSlice shop/web-1: no addressType: skipped"
    );
    assert_eq!(
        garbage(&one_slice(
            r#""addressType":"IPv4","endpoints":[{"addresses":"10.0.0.1"}]"#
        )),
        "EndpointSlice shop/web-1: invalid type: string \"10.0.0.1\", expected a sequence"
    );
    assert_eq!(
        garbage(&one_slice(
            r#""addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"],"conditions":{"ready":"yes"}}]"#
        )),
        "EndpointSlice shop/web-1: invalid type: string \"yes\", expected a boolean"
    );
    assert_eq!(
        garbage(&one_slice(
            r#""addressType":"IPv4","ports":[{"port":80}],"endpoints":[{"addresses":["fd00::1"]}]"#
        )),
        "Service shop/web: EndpointSlice shop/web-1: endpoint address fd00::1 is not of addressType IPv4: skipped"
    );
    assert_eq!(
        garbage(&one_slice(
            r#""addressType":"IPv4","ports":[{"port":80}],"endpoints":[{"addresses":["pod-a"]}]"#
        )),
        "Service shop/web: EndpointSlice shop/web-1: endpoint address \"pod-a\" is not an IP address: skipped"
    );
    assert_eq!(
        garbage(&one_slice(r#""addressType":"IPv5","endpoints":[]"#)),
        "Service shop/web: EndpointSlice shop/web-1: unknown addressType \"IPv5\": skipped"
    );
    assert_eq!(
        garbage(&one_slice(
            r#""addressType":"IPv4","ports":[{"port":0}],"endpoints":[]"#
        )),
        "Service shop/web: EndpointSlice shop/web-1: port \"\": 0 is not a port number: skipped"
    );
}

/// Every value of every fixture replaced, in turn, by values of other
/// JSON types: reading and mapping answer (a table or an error), never
/// panic. Each Service is mutated in a List with its own slices, so that
/// every mutation reaches the mapping of that Service.
#[test]
fn no_mutation_of_a_real_dump_panics() {
    fn paths(v: &Value, at: &mut Vec<Vec<String>>, here: &mut Vec<String>) {
        at.push(here.clone());
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    here.push(k.clone());
                    paths(c, at, here);
                    here.pop();
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    here.push(i.to_string());
                    paths(c, at, here);
                    here.pop();
                }
            }
            _ => {}
        }
    }
    fn at<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
        path.iter().try_fold(v, |v, k| match v {
            Value::Object(m) => m.get_mut(k),
            Value::Array(a) => a.get_mut(k.parse::<usize>().ok()?),
            _ => None,
        })
    }
    let replacements = [
        Value::Null,
        Value::from(-1),
        Value::from("x"),
        Value::Array(Vec::new()),
        serde_json::json!({}),
    ];
    let mut checked = 0;
    for text in [TYPES, DUALSTACK, ENDPOINTS] {
        let doc: Value = serde_json::from_str(text).unwrap();
        let items = doc["items"].as_array().unwrap();
        let groups = items.iter().filter(|i| i["kind"] == "Service").map(|svc| {
            let mine = |i: &&Value| {
                i["kind"] == "EndpointSlice"
                    && i["metadata"]["namespace"] == svc["metadata"]["namespace"]
                    && i["metadata"]["labels"][SERVICE_NAME] == svc["metadata"]["name"]
            };
            let mut group = vec![svc.clone()];
            group.extend(items.iter().filter(mine).cloned());
            serde_json::json!({"apiVersion": "v1", "kind": "List", "items": group})
        });
        for group in groups {
            let mut all = Vec::new();
            paths(&group, &mut all, &mut Vec::new());
            for path in &all {
                for r in &replacements {
                    let mut changed = group.clone();
                    if let Some(v) = at(&mut changed, path) {
                        *v = r.clone();
                    }
                    let _ = read_objects(&changed.to_string()).map(|o| map(&o, &node()));
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 10_000, "{checked}");
}

/// The health-check node ports, as kube-proxy serves them: only of
/// `externalTrafficPolicy: Local` LoadBalancer Services, each with its
/// ready endpoints on this node (distinct addresses over its ports).
#[test]
fn health_check_node_ports_are_local_load_balancers_with_their_local_ready_endpoints() {
    let service = |name: &str, kind: &str, policy: &str, port: u16| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"namespace":"shop","name":"{name}"}},
            "spec":{{"type":"{kind}","externalTrafficPolicy":"{policy}","healthCheckNodePort":{port},
                     "clusterIP":"10.96.0.{}","ports":[{{"name":"a","port":80,"nodePort":{}}},{{"name":"b","port":81,"nodePort":{}}}]}}}}"#,
            port - 32000,
            port - 2000,
            port - 1000
        )
    };
    let slice = |name: &str, svc: &str, port: &str, eps: &str| {
        format!(
            r#"{{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
            "metadata":{{"namespace":"shop","name":"{name}","labels":{{"kubernetes.io/service-name":"{svc}"}}}},
            "addressType":"IPv4","ports":[{{"name":"{port}","port":8080}}],"endpoints":[{eps}]}}"#
        )
    };
    let ep = |ip: &str, node: &str, cond: &str| {
        format!(r#"{{"addresses":["{ip}"],"nodeName":"{node}","conditions":{{{cond}}}}}"#)
    };
    let items = [
        service("web", "LoadBalancer", "Local", 32001),
        service("idle", "LoadBalancer", "Local", 32002),
        service("cluster", "LoadBalancer", "Cluster", 32003),
        service("np", "NodePort", "Local", 32004),
        slice(
            "web-a",
            "web",
            "a",
            &[
                ep("10.244.0.1", "node-a", ""),
                ep("10.244.0.2", "node-a", r#""ready":true"#),
                ep(
                    "10.244.0.3",
                    "node-a",
                    r#""ready":false,"serving":true,"terminating":true"#,
                ),
                ep("10.244.1.1", "node-b", ""),
            ]
            .join(","),
        ),
        // The same address on the Service's other port counts once.
        slice("web-b", "web", "b", &ep("10.244.0.1", "node-a", "")),
        slice("idle-a", "idle", "a", &ep("10.244.1.2", "node-b", "")),
    ];
    let dump = format!(r#"{{"kind":"List","items":[{}]}}"#, items.join(","));
    let objects = read_objects(&dump).unwrap();
    let checks = |node: Option<&str>| -> Vec<(u16, String, usize)> {
        let services: Vec<_> = objects.services.iter().collect();
        let slices: Vec<_> = objects.slices.iter().collect();
        crate::model::health_checks(&crate::mapping::model(services, &slices, node, None).ports)
            .into_iter()
            .map(|(p, h)| (p, h.name, h.local_endpoints))
            .collect()
    };
    assert_eq!(
        checks(Some("node-a")),
        [(32001, "web".to_owned(), 2), (32002, "idle".to_owned(), 0)]
    );
    assert_eq!(
        checks(Some("node-b")),
        [(32001, "web".to_owned(), 1), (32002, "idle".to_owned(), 1)]
    );
    // No node name: nothing is local.
    assert_eq!(checks(None)[0].2, 0);
}

/// One endpoint of a topology case: address, node, `hints.forZones`,
/// `hints.forNodes`, conditions (JSON members, empty: all defaults).
type TopoEp = (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static str,
);

/// A case of endpoint selection: a NodePort Service `shop/web`
/// (ClusterIP 10.96.0.10:80, NodePort 30080) and its EndpointSlice, as
/// kubectl prints them, seen from node-a; the real servers of the
/// ClusterIP (internal traffic) and of the NodePort (external traffic).
struct TopoCase {
    /// The case of kube-proxy's `TestCategorizeEndpoints`
    /// (pkg/proxy/topology_test.go) this one mirrors, or the rule of
    /// `topologyModeFromHints` it checks.
    mirrors: &'static str,
    /// `--node-zone`.
    zone: Option<&'static str>,
    /// Extra members of the Service's spec (traffic policies, ...).
    spec: &'static str,
    endpoints: &'static [TopoEp],
    cluster_ip: &'static [&'static str],
    node_port: &'static [&'static str],
}

fn topo_dump(case: &TopoCase) -> String {
    let service = format!(
        r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"web","namespace":"shop","uid":"5b7c2c1e-4f0e-4d8e-9a55-0c1d2e3f4a5b"}},
        "spec":{{"clusterIP":"10.96.0.10","clusterIPs":["10.96.0.10"],"ipFamilies":["IPv4"],"ipFamilyPolicy":"SingleStack",
                 "ports":[{{"name":"http","nodePort":30080,"port":80,"protocol":"TCP","targetPort":8080}}],
                 "selector":{{"app":"web"}},"sessionAffinity":"None","type":"NodePort"{}}},
        "status":{{"loadBalancer":{{}}}}}}"#,
        case.spec
    );
    let names = |list: &[&str]| {
        list.iter()
            .map(|n| format!(r#"{{"name":"{n}"}}"#))
            .collect::<Vec<_>>()
            .join(",")
    };
    let eps: Vec<String> = case
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, (ip, node, zones, nodes, cond))| {
            let mut hints = Vec::new();
            if !zones.is_empty() {
                hints.push(format!(r#""forZones":[{}]"#, names(zones)));
            }
            if !nodes.is_empty() {
                hints.push(format!(r#""forNodes":[{}]"#, names(nodes)));
            }
            let hints = if hints.is_empty() {
                String::new()
            } else {
                format!(r#","hints":{{{}}}"#, hints.join(","))
            };
            let zone = if *node == "node-a" {
                "zone-a"
            } else {
                "zone-b"
            };
            format!(
                r#"{{"addresses":["{ip}"],"conditions":{{{cond}}}{hints},"nodeName":"{node}",
                "targetRef":{{"kind":"Pod","name":"web-{i}","namespace":"shop"}},"zone":"{zone}"}}"#
            )
        })
        .collect();
    let slice = format!(
        r#"{{"addressType":"IPv4","apiVersion":"discovery.k8s.io/v1","endpoints":[{}],"kind":"EndpointSlice",
        "metadata":{{"labels":{{"endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io",
                               "kubernetes.io/service-name":"web"}},"name":"web-x7k2p","namespace":"shop"}},
        "ports":[{{"name":"http","port":8080,"protocol":"TCP"}}]}}"#,
        eps.join(",")
    );
    format!(r#"{{"apiVersion":"v1","kind":"List","items":[{service},{slice}]}}"#)
}

/// The real servers of one virtual service, sorted.
fn dests_of(m: &Mapped, vip: &str) -> Vec<String> {
    let vip: SocketAddr = vip.parse().unwrap();
    let d = m
        .desired
        .iter()
        .find(|d| matches!(d.server.service.id, ServiceId::Inet { addr, port, .. } if SocketAddr::new(addr, port) == vip))
        .unwrap_or_else(|| panic!("no virtual service {vip}"));
    let mut out: Vec<String> = d
        .server
        .dests
        .iter()
        .map(|r| r.socket_addr().ip().to_string())
        .collect();
    out.sort();
    out
}

const READY: &str = r#""ready":true,"serving":true,"terminating":false"#;
const UNREADY: &str = r#""ready":false,"serving":false,"terminating":false"#;
const TERMINATING: &str = r#""ready":false,"serving":true,"terminating":true"#;
const A: &[&str] = &["zone-a"];
const B: &[&str] = &["zone-b"];
const C: &[&str] = &["zone-c"];
const NONE: &[&str] = &[];

const TOPOLOGY_CASES: &[TopoCase] = &[
    TopoCase {
        mirrors: "normal endpoint filtering, auto annotation (PreferClose writes the zone hints)",
        zone: Some("zone-a"),
        spec: r#","trafficDistribution":"PreferClose""#,
        endpoints: &[
            ("10.1.2.3", "node-b", A, NONE, READY),
            ("10.1.2.4", "node-b", B, NONE, READY),
            ("10.1.2.5", "node-b", C, NONE, READY),
            ("10.1.2.6", "node-b", A, NONE, READY),
        ],
        cluster_ip: &["10.1.2.3", "10.1.2.6"],
        node_port: &["10.1.2.3", "10.1.2.6"],
    },
    TopoCase {
        mirrors: "topologyModeFromHints since 1.33: the hints alone decide, \
                  no Service field or annotation is read",
        zone: Some("zone-a"),
        spec: "",
        endpoints: &[
            ("10.1.2.3", "node-b", A, NONE, READY),
            ("10.1.2.4", "node-b", B, NONE, READY),
        ],
        cluster_ip: &["10.1.2.3"],
        node_port: &["10.1.2.3"],
    },
    TopoCase {
        mirrors: "empty node labels (no zone known: hints unused)",
        zone: None,
        spec: r#","trafficDistribution":"PreferClose""#,
        endpoints: &[("10.1.2.3", "node-b", A, NONE, READY)],
        cluster_ip: &["10.1.2.3"],
        node_port: &["10.1.2.3"],
    },
    TopoCase {
        mirrors: "node in different zone, no endpoint filtering",
        zone: Some("zone-b"),
        spec: r#","trafficDistribution":"PreferClose""#,
        endpoints: &[
            ("10.1.2.3", "node-b", A, NONE, READY),
            ("10.1.2.5", "node-b", C, NONE, READY),
        ],
        cluster_ip: &["10.1.2.3", "10.1.2.5"],
        node_port: &["10.1.2.3", "10.1.2.5"],
    },
    TopoCase {
        mirrors: "unready endpoint",
        zone: Some("zone-a"),
        spec: r#","trafficDistribution":"PreferClose""#,
        endpoints: &[
            ("10.1.2.3", "node-b", A, NONE, READY),
            ("10.1.2.4", "node-b", B, NONE, READY),
            ("10.1.2.5", "node-b", C, NONE, READY),
            ("10.1.2.6", "node-b", A, NONE, UNREADY),
        ],
        cluster_ip: &["10.1.2.3"],
        node_port: &["10.1.2.3"],
    },
    TopoCase {
        mirrors: "only unready endpoints in same zone (should not filter)",
        zone: Some("zone-a"),
        spec: r#","trafficDistribution":"PreferClose""#,
        endpoints: &[
            ("10.1.2.3", "node-b", A, NONE, UNREADY),
            ("10.1.2.4", "node-b", B, NONE, READY),
            ("10.1.2.5", "node-b", C, NONE, READY),
            ("10.1.2.6", "node-b", A, NONE, UNREADY),
        ],
        cluster_ip: &["10.1.2.4", "10.1.2.5"],
        node_port: &["10.1.2.4", "10.1.2.5"],
    },
    TopoCase {
        mirrors: "missing hints, no filtering applied",
        zone: Some("zone-a"),
        spec: r#","trafficDistribution":"PreferClose""#,
        endpoints: &[
            ("10.1.2.3", "node-b", A, NONE, READY),
            ("10.1.2.4", "node-b", B, NONE, READY),
            ("10.1.2.5", "node-b", NONE, NONE, READY),
            ("10.1.2.6", "node-b", A, NONE, READY),
        ],
        cluster_ip: &["10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.6"],
        node_port: &["10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.6"],
    },
    TopoCase {
        mirrors: "multiple hints per endpoint, filtering includes any endpoint with zone included",
        zone: Some("zone-c"),
        spec: r#","trafficDistribution":"PreferClose""#,
        endpoints: &[
            (
                "10.1.2.3",
                "node-b",
                &["zone-a", "zone-b", "zone-c"],
                NONE,
                READY,
            ),
            ("10.1.2.4", "node-b", &["zone-b", "zone-c"], NONE, READY),
            ("10.1.2.5", "node-b", &["zone-b", "zone-d"], NONE, READY),
            ("10.1.2.6", "node-b", C, NONE, READY),
        ],
        cluster_ip: &["10.1.2.3", "10.1.2.4", "10.1.2.6"],
        node_port: &["10.1.2.3", "10.1.2.4", "10.1.2.6"],
    },
    TopoCase {
        mirrors: "externalTrafficPolicy: Local, topology ignored for Local endpoints",
        zone: Some("zone-a"),
        spec: r#","externalTrafficPolicy":"Local","trafficDistribution":"PreferClose""#,
        endpoints: &[
            ("10.1.2.3", "node-a", A, NONE, READY),
            ("10.1.2.4", "node-a", B, NONE, READY),
            ("10.1.2.5", "node-b", C, NONE, READY),
            ("10.1.2.6", "node-b", A, NONE, READY),
        ],
        cluster_ip: &["10.1.2.3", "10.1.2.6"],
        node_port: &["10.1.2.3", "10.1.2.4"],
    },
    TopoCase {
        mirrors: "internalTrafficPolicy: Local, topology ignored for Local endpoints",
        zone: Some("zone-a"),
        spec: r#","internalTrafficPolicy":"Local","trafficDistribution":"PreferClose""#,
        endpoints: &[
            ("10.1.2.3", "node-a", A, NONE, READY),
            ("10.1.2.4", "node-a", B, NONE, READY),
            ("10.1.2.5", "node-b", C, NONE, READY),
            ("10.1.2.6", "node-b", A, NONE, READY),
        ],
        cluster_ip: &["10.1.2.3", "10.1.2.4"],
        node_port: &["10.1.2.3", "10.1.2.6"],
    },
    TopoCase {
        mirrors: "conflicting topology and localness require merging allEndpoints",
        zone: Some("zone-a"),
        spec: r#","externalTrafficPolicy":"Local","trafficDistribution":"PreferClose""#,
        endpoints: &[
            ("10.0.0.0", "node-a", A, NONE, READY),
            ("10.0.0.1", "node-a", B, NONE, READY),
            ("10.0.0.2", "node-b", A, NONE, READY),
            ("10.0.0.3", "node-b", B, NONE, READY),
        ],
        cluster_ip: &["10.0.0.0", "10.0.0.2"],
        node_port: &["10.0.0.0", "10.0.0.1"],
    },
    TopoCase {
        mirrors: "internalTrafficPolicy: Local, but all endpoints are remote",
        zone: Some("zone-a"),
        spec: r#","internalTrafficPolicy":"Local""#,
        endpoints: &[
            ("10.0.0.0", "node-b", NONE, NONE, READY),
            ("10.0.0.1", "node-b", NONE, NONE, READY),
        ],
        cluster_ip: &[],
        node_port: &["10.0.0.0", "10.0.0.1"],
    },
    TopoCase {
        mirrors: "Cluster traffic policy, PTE enabled, all endpoints are terminating \
                  (hinted: with no ready endpoint, topology is not used)",
        zone: Some("zone-a"),
        spec: r#","trafficDistribution":"PreferClose""#,
        endpoints: &[
            ("10.0.0.0", "node-a", A, NONE, TERMINATING),
            ("10.0.0.1", "node-b", B, NONE, TERMINATING),
        ],
        cluster_ip: &["10.0.0.0", "10.0.0.1"],
        node_port: &["10.0.0.0", "10.0.0.1"],
    },
    TopoCase {
        mirrors: "iTP: Cluster, eTP: Local, PTE enabled, with terminating endpoints",
        zone: Some("zone-a"),
        spec: r#","externalTrafficPolicy":"Local""#,
        endpoints: &[
            ("10.0.0.0", "node-b", NONE, NONE, READY),
            ("10.0.0.1", "node-a", NONE, NONE, UNREADY),
            ("10.0.0.2", "node-a", NONE, NONE, TERMINATING),
            ("10.0.0.3", "node-b", NONE, NONE, TERMINATING),
        ],
        cluster_ip: &["10.0.0.0"],
        node_port: &["10.0.0.2"],
    },
    TopoCase {
        mirrors: "iTP: Local, eTP: Local, PTE enabled, all endpoints remote and terminating",
        zone: Some("zone-a"),
        spec: r#","internalTrafficPolicy":"Local","externalTrafficPolicy":"Local""#,
        endpoints: &[
            ("10.0.0.0", "node-b", NONE, NONE, TERMINATING),
            ("10.0.0.1", "node-b", NONE, NONE, TERMINATING),
        ],
        cluster_ip: &[],
        node_port: &[],
    },
    TopoCase {
        mirrors: "topologyModeFromHints, PreferSameNode: every ready endpoint has a node \
                  hint and one is for this node (node hints before zone hints)",
        zone: Some("zone-a"),
        spec: r#","trafficDistribution":"PreferSameNode""#,
        endpoints: &[
            ("10.1.2.3", "node-a", A, &["node-a"], READY),
            ("10.1.2.4", "node-c", A, &["node-c"], READY),
            ("10.1.2.5", "node-b", B, &["node-b"], READY),
            ("10.1.2.6", "node-b", B, &["node-b"], UNREADY),
        ],
        cluster_ip: &["10.1.2.3"],
        node_port: &["10.1.2.3"],
    },
    TopoCase {
        mirrors: "topologyModeFromHints, PreferSameNode: no node hint for this node, \
                  the zone hints decide",
        zone: Some("zone-a"),
        spec: r#","trafficDistribution":"PreferSameNode""#,
        endpoints: &[
            ("10.1.2.4", "node-c", A, &["node-c"], READY),
            ("10.1.2.5", "node-b", B, &["node-b"], READY),
        ],
        cluster_ip: &["10.1.2.4"],
        node_port: &["10.1.2.4"],
    },
    TopoCase {
        mirrors: "topologyModeFromHints, PreferSameNode: a ready endpoint without a \
                  node hint, the zone hints decide",
        zone: Some("zone-b"),
        spec: r#","trafficDistribution":"PreferSameNode""#,
        endpoints: &[
            ("10.1.2.3", "node-a", A, &["node-a"], READY),
            ("10.1.2.5", "node-b", B, NONE, READY),
        ],
        cluster_ip: &["10.1.2.5"],
        node_port: &["10.1.2.5"],
    },
];

/// Endpoint selection as kube-proxy's `CategorizeEndpoints` makes it
/// (pkg/proxy/topology.go): topology hints, traffic policies, the
/// fallbacks; each case names the kube-proxy test case it mirrors.
#[test]
fn endpoint_selection_is_kube_proxys_topology_and_traffic_policies() {
    let mut failed = Vec::new();
    for case in TOPOLOGY_CASES {
        let node = Node {
            zone: case.zone.map(str::to_owned),
            ..node()
        };
        let m = mapped(&topo_dump(case), &node);
        let got = (
            dests_of(&m, "10.96.0.10:80"),
            dests_of(&m, "192.168.49.2:30080"),
        );
        let want = (
            case.cluster_ip.iter().map(|s| s.to_string()).collect(),
            case.node_port.iter().map(|s| s.to_string()).collect(),
        );
        if got != want {
            failed.push(format!(
                "{}: ClusterIP {:?} NodePort {:?}, want {:?} {:?}",
                case.mirrors, got.0, got.1, want.0, want.1
            ));
        }
    }
    assert!(failed.is_empty(), "\n{}", failed.join("\n"));
}

/// The packet path is planned from the same choice: its hairpin elements
/// are the endpoints topology and the traffic policies leave.
#[test]
fn the_packet_path_gets_the_same_endpoint_selection() {
    for case in TOPOLOGY_CASES {
        let node = Node {
            zone: case.zone.map(str::to_owned),
            ..node()
        };
        let m = mapped(&topo_dump(case), &node);
        let elements = crate::packet::elements(
            &m.ports,
            &m.node_ips,
            &crate::packet::Options::default(),
            |_, _, _| false,
        );
        let mut got: Vec<String> = elements
            .keys("hairpin-v4")
            .iter()
            .map(|k| k.split(' ').next().unwrap().to_owned())
            .collect();
        got.dedup();
        let mut want: Vec<String> = case
            .cluster_ip
            .iter()
            .chain(case.node_port)
            .map(|s| s.to_string())
            .collect();
        want.sort();
        want.dedup();
        assert_eq!(got, want, "{}", case.mirrors);
    }
}

/// The objects of one Service `shop/NAME` (port `http` 80 to 8080,
/// NodePort 30060 and up where its type has one) of
/// `spec` (JSON members after the ClusterIP's) and its slice of
/// endpoints (address, node, conditions).
/// An endpoint: address, node, conditions (JSON members).
type EtpEndpoint<'a> = (&'a str, &'a str, &'a str);
/// A Service: name, spec members, ingress, endpoints.
type EtpService<'a> = (&'a str, &'a str, &'a str, &'a [EtpEndpoint<'a>]);

fn etp_objects(services: &[EtpService<'_>]) -> String {
    let mut items = Vec::new();
    for (i, (name, spec, status, eps)) in services.iter().enumerate() {
        items.push(format!(
            r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"namespace":"shop","name":"{name}"}},
            "spec":{{"clusterIP":"10.96.60.{}","ports":[{{"name":"http","port":80,"nodePort":{}}}]{spec}}},
            "status":{{"loadBalancer":{{"ingress":[{status}]}}}}}}"#,
            i + 1,
            30060 + i
        ));
        let eps: Vec<String> = eps
            .iter()
            .map(|(ip, node, cond)| {
                format!(r#"{{"addresses":["{ip}"],"nodeName":"{node}","conditions":{{{cond}}}}}"#)
            })
            .collect();
        items.push(format!(
            r#"{{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
            "metadata":{{"namespace":"shop","name":"{name}-1","labels":{{"kubernetes.io/service-name":"{name}"}}}},
            "addressType":"IPv4","ports":[{{"name":"http","port":8080}}],"endpoints":[{}]}}"#,
            eps.join(",")
        ));
    }
    format!(
        r#"{{"apiVersion":"v1","kind":"List","items":[{}]}}"#,
        items.join(",")
    )
}

/// The firewall-mark services of `m` as restore lines.
fn fwmark_table(m: &Mapped) -> String {
    table(&Mapped {
        desired: m
            .desired
            .iter()
            .filter(|d| matches!(d.server.service.id, ServiceId::Fwmark { .. }))
            .cloned()
            .collect(),
        ..Mapped::default()
    })
}

/// Issue 30 (kubernetes#93456, #71596): in-cluster traffic to the
/// load-balancer and external IPs of an `externalTrafficPolicy: Local`
/// port gets a firewall-mark service with the port's Cluster endpoints
/// (ready ones, else serving and terminating ones), while the LB and
/// external IP services keep this node's; other ports get none.
#[test]
fn local_lb_and_external_ips_get_a_firewall_mark_service_with_every_ready_endpoint() {
    const LB: &str = r#","type":"LoadBalancer","externalTrafficPolicy":"Local""#;
    const READY: &str = r#""ready":true"#;
    const TERMINATING: &str = r#""ready":false,"serving":true,"terminating":true"#;
    struct Case {
        what: &'static str,
        spec: &'static str,
        status: &'static str,
        eps: &'static [(&'static str, &'static str, &'static str)],
        /// The LB or external IP's service and real servers.
        vip: &'static str,
        vip_table: &'static str,
        /// The firewall-mark services (the first mark is 0x1000 = 4096).
        fwmark_table: &'static str,
    }
    let cases = [
        Case {
            what: "LB IP, a local and a remote ready endpoint",
            spec: LB,
            status: r#"{"ip":"198.51.100.60"}"#,
            eps: &[("10.244.1.1", "node-a", READY), ("10.244.2.1", "node-b", READY)],
            vip: "198.51.100.60:80",
            vip_table: "-A -t 198.51.100.60:80 -s rr\n-a -t 198.51.100.60:80 -r 10.244.1.1:8080 -m -w 1\n",
            fwmark_table: "-A -f 4096 -s rr\n-a -f 4096 -r 10.244.1.1:8080 -m -w 1\n-a -f 4096 -r 10.244.2.1:8080 -m -w 1\n",
        },
        Case {
            what: "external IP, its only endpoint remote",
            spec: r#","type":"ClusterIP","externalTrafficPolicy":"Local","externalIPs":["203.0.113.60"]"#,
            status: "",
            eps: &[("10.244.2.1", "node-b", READY)],
            vip: "203.0.113.60:80",
            vip_table: "-A -t 203.0.113.60:80 -s rr\n",
            fwmark_table: "-A -f 4096 -s rr\n-a -f 4096 -r 10.244.2.1:8080 -m -w 1\n",
        },
        Case {
            what: "LB IP, unready endpoints: the serving terminating one, not the unready",
            spec: LB,
            status: r#"{"ip":"198.51.100.60"}"#,
            eps: &[
                ("10.244.2.1", "node-b", TERMINATING),
                ("10.244.2.2", "node-b", r#""ready":false,"serving":false,"terminating":true"#),
                ("10.244.1.1", "node-a", r#""ready":false"#),
            ],
            vip: "198.51.100.60:80",
            vip_table: "-A -t 198.51.100.60:80 -s rr\n",
            fwmark_table: "-A -f 4096 -s rr\n-a -f 4096 -r 10.244.2.1:8080 -m -w 1\n",
        },
        Case {
            what: "LB IP, a ready remote endpoint beside a terminating local one: the ready one",
            spec: LB,
            status: r#"{"ip":"198.51.100.60"}"#,
            eps: &[("10.244.1.1", "node-a", TERMINATING), ("10.244.2.1", "node-b", READY)],
            vip: "198.51.100.60:80",
            vip_table: "-A -t 198.51.100.60:80 -s rr\n-a -t 198.51.100.60:80 -r 10.244.1.1:8080 -m -w 1\n",
            fwmark_table: "-A -f 4096 -s rr\n-a -f 4096 -r 10.244.2.1:8080 -m -w 1\n",
        },
        Case {
            what: "externalTrafficPolicy Cluster: no firewall mark",
            spec: r#","type":"LoadBalancer","externalTrafficPolicy":"Cluster""#,
            status: r#"{"ip":"198.51.100.60"}"#,
            eps: &[("10.244.1.1", "node-a", READY), ("10.244.2.1", "node-b", READY)],
            vip: "198.51.100.60:80",
            vip_table: "-A -t 198.51.100.60:80 -s rr\n-a -t 198.51.100.60:80 -r 10.244.1.1:8080 -m -w 1\n-a -t 198.51.100.60:80 -r 10.244.2.1:8080 -m -w 1\n",
            fwmark_table: "",
        },
        Case {
            what: "Local NodePort: its in-cluster traffic too (kube-proxy's short-circuit)",
            spec: r#","type":"NodePort","externalTrafficPolicy":"Local""#,
            status: "",
            eps: &[("10.244.2.1", "node-b", READY)],
            vip: "192.168.49.2:30060",
            vip_table: "-A -t 192.168.49.2:30060 -s rr\n",
            fwmark_table: "-A -f 4096 -s rr\n-a -f 4096 -r 10.244.2.1:8080 -m -w 1\n",
        },
        Case {
            what: "Local ClusterIP without external IP: no firewall mark",
            spec: r#","type":"ClusterIP","externalTrafficPolicy":"Local""#,
            status: "",
            eps: &[("10.244.2.1", "node-b", READY)],
            vip: "10.96.60.1:80",
            vip_table: "-A -t 10.96.60.1:80 -s rr\n-a -t 10.96.60.1:80 -r 10.244.2.1:8080 -m -w 1\n",
            fwmark_table: "",
        },
        Case {
            what: "Local LB whose ingress is ipMode Proxy, without node ports: no firewall mark",
            spec: r#","type":"LoadBalancer","externalTrafficPolicy":"Local","allocateLoadBalancerNodePorts":false"#,
            status: r#"{"ip":"198.51.100.60","ipMode":"Proxy"}"#,
            eps: &[("10.244.2.1", "node-b", READY)],
            vip: "198.51.100.60:80",
            vip_table: "",
            fwmark_table: "",
        },
    ];
    for case in cases {
        let text = etp_objects(&[("web", case.spec, case.status, case.eps)]);
        let mut m = mapped(&text, &node());
        assign_fwmarks(&mut m, &BTreeMap::new(), FwmarkRange::default(), "rr");
        assert_eq!(only(&m, &[case.vip]), case.vip_table, "{}", case.what);
        assert_eq!(fwmark_table(&m), case.fwmark_table, "{}", case.what);
        assert_eq!(m.warnings, Vec::<String>::new(), "{}", case.what);
        let marks: Vec<Option<u32>> = m.ports.iter().map(|p| p.fwmark).collect();
        let want = if case.fwmark_table.is_empty() {
            None
        } else {
            Some(4096)
        };
        assert_eq!(marks, vec![want], "{}", case.what);
    }
}

#[test]
fn a_firewall_mark_service_has_the_ports_scheduling_and_both_families() {
    let text = r#"{"apiVersion":"v1","kind":"List","items":[
      {"apiVersion":"v1","kind":"Service","metadata":{"namespace":"shop","name":"web",
        "annotations":{"ipvsadm-rs.io/scheduler":"mh"}},
       "spec":{"type":"LoadBalancer","externalTrafficPolicy":"Local","sessionAffinity":"ClientIP",
         "ipFamilies":["IPv4","IPv6"],"clusterIPs":["10.96.60.1","fd00:96::60"],"clusterIP":"10.96.60.1",
         "ports":[{"name":"http","port":80,"nodePort":30060}]},
       "status":{"loadBalancer":{"ingress":[{"ip":"198.51.100.60"},{"ip":"2001:db8::60"}]}}},
      {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
       "metadata":{"namespace":"shop","name":"web-4","labels":{"kubernetes.io/service-name":"web"}},
       "addressType":"IPv4","ports":[{"name":"http","port":8080}],
       "endpoints":[{"addresses":["10.244.2.1"],"nodeName":"node-b"}]},
      {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
       "metadata":{"namespace":"shop","name":"web-6","labels":{"kubernetes.io/service-name":"web"}},
       "addressType":"IPv6","ports":[{"name":"http","port":8080}],
       "endpoints":[{"addresses":["fd00:244::2:1"],"nodeName":"node-b"}]}
    ]}"#;
    let mut m = mapped(text, &node());
    assign_fwmarks(&mut m, &BTreeMap::new(), FwmarkRange::default(), "rr");
    assert_eq!(
        fwmark_table(&m),
        "\
-A -f 4096 -s mh -p 10800 -b mh-port
-a -f 4096 -r 10.244.2.1:8080 -m -w 1
-A -f 4096 -6 -s mh -p 10800 -b mh-port
-a -f 4096 -6 -r [fd00:244::2:1]:8080 -m -w 1
"
    );
}

/// A Service port keeps its mark from sync to sync and across restarts
/// (the state file's names give `previous`); new ports take the lowest
/// free mark of the range, never one another keeps; a mark out of the
/// range is given anew; a used-up range is warned about.
#[test]
fn firewall_marks_are_stable_across_syncs() {
    const LB: &str = r#","type":"LoadBalancer","externalTrafficPolicy":"Local""#;
    let eps: &[(&str, &str, &str)] = &[("10.244.2.1", "node-b", "")];
    let objects = |names: &[&'static str]| {
        // Each Service its own LB IP.
        let statuses: Vec<String> = (0..names.len())
            .map(|i| format!(r#"{{"ip":"198.51.100.{}"}}"#, 60 + i))
            .collect();
        let svcs: Vec<EtpService<'_>> = names
            .iter()
            .zip(&statuses)
            .map(|(n, status)| (*n, LB, status.as_str(), eps))
            .collect();
        etp_objects(&svcs)
    };
    let marks = |m: &Mapped| -> BTreeMap<String, u32> {
        m.ports
            .iter()
            .filter_map(|p| Some((p.origin.clone(), p.fwmark?)))
            .collect()
    };
    let run = |names: &[&'static str], previous: &BTreeMap<String, u32>, range: FwmarkRange| {
        // Each Service has its own LB IP: the first wants the address.
        let mut m = mapped(&objects(names), &node());
        assign_fwmarks(&mut m, previous, range, "rr");
        m
    };
    let range = FwmarkRange::default();
    let m1 = run(&["a", "b", "c"], &BTreeMap::new(), range);
    let first = marks(&m1);
    assert_eq!(
        first,
        [
            ("shop/a:http".to_owned(), 0x1000),
            ("shop/b:http".to_owned(), 0x1001),
            ("shop/c:http".to_owned(), 0x1002)
        ]
        .into()
    );
    // The same objects again: the same marks.
    assert_eq!(marks(&run(&["a", "b", "c"], &first, range)), first);
    // a goes, then d comes: b and c keep theirs, d takes a's freed mark.
    let m2 = run(&["b", "c"], &first, range);
    assert_eq!(marks(&m2)["shop/c:http"], 0x1002);
    let m3 = run(&["b", "c", "d"], &marks(&m2), range);
    assert_eq!(
        marks(&m3),
        [
            ("shop/b:http".to_owned(), 0x1001),
            ("shop/c:http".to_owned(), 0x1002),
            ("shop/d:http".to_owned(), 0x1000)
        ]
        .into()
    );
    // A Service sorted before the others comes: it never takes theirs.
    let m4 = run(&["0", "b", "c", "d"], &marks(&m3), range);
    assert_eq!(marks(&m4)["shop/0:http"], 0x1003);
    // A remembered mark out of the range (the flag moved): given anew.
    let moved = FwmarkRange {
        first: 0x20000,
        last: 0x20001,
    };
    let m5 = run(&["b", "c"], &marks(&m3), moved);
    assert_eq!(
        marks(&m5),
        [
            ("shop/b:http".to_owned(), 0x20000),
            ("shop/c:http".to_owned(), 0x20001)
        ]
        .into()
    );
    // Two marks for three ports: the third is warned about and gets none.
    let m6 = run(&["b", "c", "d"], &marks(&m5), moved);
    assert_eq!(marks(&m6).len(), 2);
    assert_eq!(m6.warnings.len(), 1, "{:?}", m6.warnings);
    assert!(m6.warnings[0].contains("shop/d:http"), "{:?}", m6.warnings);
}

#[test]
fn fwmark_ranges_read_and_refuse() {
    assert_eq!(
        "0x1000-0x3fff".parse::<FwmarkRange>(),
        Ok(FwmarkRange::default())
    );
    assert_eq!(
        "5-10".parse::<FwmarkRange>(),
        Ok(FwmarkRange { first: 5, last: 10 })
    );
    for bad in [
        "",
        "0-10",
        "10-5",
        "0x-0x10",
        "1",
        "a-b",
        "-1-5",
        "0x4000-0x4fff",
    ] {
        assert!(bad.parse::<FwmarkRange>().is_err(), "{bad:?}");
    }
    // Marks with the masquerade bit are never given.
    let r: FwmarkRange = "0x3fff-0x8000".parse().unwrap();
    assert_eq!(r.marks().take(2).collect::<Vec<_>>(), vec![0x3fff, 0x8000]);
}
