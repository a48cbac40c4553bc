//! Migration in place (issue 30) and the recovery of a lost state file
//! (issue 34), both through `--adopt`.
//!
//! `a_kube_proxy_table_is_adopted_without_a_dropped_connection`: in the
//! cluster lab (`vm_tests::cluster`), node1 gets what kube-proxy's IPVS
//! mode writes for the test's cluster, loaded with the real `ipvsadm -R`
//! ([`KUBE_PROXY_TABLE`], each line's source given there), `kube-ipvs0`
//! with its addresses and the sysctls kube-proxy sets. A client outside
//! the cluster CIDR holds a TCP connection open through a ClusterIP
//! (echoing every 50 ms) and opens a new one every 20 ms; the real
//! ipvsadm reads the table every 50 ms. Then:
//! 1. `--from-k8s` live without `--adopt`: kube-proxy's services are
//!    left alone and reported, the state file lists none;
//! 2. stopped, started again with `--adopt`: the services that are
//!    exactly what the mapping writes are adopted (the log says so, the
//!    state file lists them, the first sync writes nothing), the one
//!    that differs (its scheduler) and another tool's are left alone and
//!    reported;
//! 3. the state file cut to 0 bytes and its copy deleted: a start without
//!    `--adopt` is refused (exit 2), naming `--adopt`; a start with it
//!    adopts everything again and writes nothing.
//!
//! All along, every read of the table by the real ipvsadm must be the
//! table kube-proxy left (no service missing, removed and re-added, or
//! at another weight: the connection counters of a service never go
//! down, as they would for a recreated one), the long connection must
//! keep echoing and no new connection may fail.
//!
//! `a_kube_router_table_is_adopted_with_its_annotated_schedulers`: what
//! kube-router writes for Services with its scheduler annotations, its
//! addresses on its `kube-dummy-if`, adopted by an offline run.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fake_apiserver::objects::{endpoint_slice, service};
use fake_apiserver::{Batch, FakeApiServer};
use vm_tests::cluster::{sa, start_on_node1, tcp_flow, Cluster, Host, POD_A, POD_B};
use vm_tests::live::{synced, Live};
use vm_tests::traffic::{echo_server, Traffic};
use vm_tests::{ipvsadm, ipvsadm_ok, run_as};

/// A hang guard for a slow emulated VM (not a speed check).
const PATIENCE: Duration = Duration::from_secs(60);

/// What kube-proxy's IPVS mode writes on node1 (`--ipvs-scheduler` at
/// its default `rr`, node addresses: node1's one, 192.168.1.1) for the
/// Services of [`objects`], as `ipvsadm -R` lines. From
/// pkg/proxy/ipvs/proxier.go (`syncService`, `syncEndpoint`,
/// `toIPVSDestination`) and docs/ipvs-reference.md section 5:
/// - a virtual service per ClusterIP and port (`default/web`,
///   `default/long`, `default/sticky`), with the scheduler `rr`, no
///   flag, netmask /32 (ipvsadm's default for `-A`);
/// - a virtual service per node address and NodePort (`default/web`'s
///   30080 on 192.168.1.1), never bound to `kube-ipvs0`;
/// - `sessionAffinity: ClientIP` as `-p` with the Service's timeout
///   (`default/sticky`: the API's default, 10800 s);
/// - real servers: each ready endpoint, masquerading, weight 1.
///
/// `default/odd` is written with `wlc`: kube-proxy run with
/// `--ipvs-scheduler wlc` once, or edited by hand: the mapping writes
/// `rr`, so it must not be adopted. `10.200.0.1:80` is another tool's
/// service no Service wants.
const KUBE_PROXY_TABLE: &str = "\
-A -t 10.96.0.10:8080 -s rr
-a -t 10.96.0.10:8080 -r 10.244.1.2:8080 -m -w 1
-a -t 10.96.0.10:8080 -r 10.244.1.3:8080 -m -w 1
-A -t 192.168.1.1:30080 -s rr
-a -t 192.168.1.1:30080 -r 10.244.1.2:8080 -m -w 1
-a -t 192.168.1.1:30080 -r 10.244.1.3:8080 -m -w 1
-A -t 10.96.0.20:7000 -s rr
-a -t 10.96.0.20:7000 -r 10.244.1.3:7000 -m -w 1
-A -t 10.96.0.30:8080 -s rr -p 10800
-a -t 10.96.0.30:8080 -r 10.244.1.2:8080 -m -w 1
-A -t 10.96.0.40:8080 -s wlc
-a -t 10.96.0.40:8080 -r 10.244.1.2:8080 -m -w 1
-A -t 10.200.0.1:80 -s wlc
-a -t 10.200.0.1:80 -r 10.9.9.9:80 -m -w 1
";

/// The addresses kube-proxy binds to `kube-ipvs0`: each ClusterIP
/// (`syncService` binds every ClusterIP, external and load-balancer IP;
/// node addresses never).
const KUBE_IPVS0: [&str; 4] = ["10.96.0.10", "10.96.0.20", "10.96.0.30", "10.96.0.40"];

/// The virtual services that are exactly what the mapping writes.
const ADOPTED: [&str; 4] = [
    "10.96.0.10:8080",
    "192.168.1.1:30080",
    "10.96.0.20:7000",
    "10.96.0.30:8080",
];

/// The Services: web (NodePort 30080, pod-a and pod-b: both on node1, so
/// that kube-proxy's table serves the client before any masquerading
/// rule exists), long (pod-b's echo server), sticky (ClientIP affinity),
/// odd.
fn objects() -> Batch {
    let mut web = service("default", "web", "10.96.0.10", &[("http", 8080)]);
    web["spec"]["type"] = "NodePort".into();
    web["spec"]["ports"][0]["nodePort"] = 30080.into();
    let mut sticky = service("default", "sticky", "10.96.0.30", &[("http", 8080)]);
    sticky["spec"]["sessionAffinity"] = "ClientIP".into();
    let mut b = Batch::default();
    b.apply(web)
        .apply(endpoint_slice(
            "default",
            "web",
            "abcde",
            &[("http", 8080)],
            &[POD_A, POD_B],
        ))
        .apply(service("default", "long", "10.96.0.20", &[("echo", 7000)]))
        .apply(endpoint_slice(
            "default",
            "long",
            "abcde",
            &[("echo", 7000)],
            &[POD_B],
        ))
        .apply(sticky)
        .apply(endpoint_slice(
            "default",
            "sticky",
            "abcde",
            &[("http", 8080)],
            &[POD_A],
        ))
        .apply(service("default", "odd", "10.96.0.40", &[("http", 8080)]))
        .apply(endpoint_slice(
            "default",
            "odd",
            "abcde",
            &[("http", 8080)],
            &[POD_A],
        ));
    b
}

fn start(dir: &Path, adopt: bool) -> Live {
    start_on_node1(dir, if adopt { &["--adopt"] } else { &[] })
}

/// The sorted lines of `ipvsadm -Sn`.
fn table() -> Vec<String> {
    let mut lines: Vec<String> = ipvsadm_ok(&["-Sn"]).lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// The connection counters of the TCP virtual services, as the real
/// ipvsadm prints them (`-Ln --stats --exact`: no K or M), by address.
fn conns() -> Vec<(String, u64)> {
    ipvsadm_ok(&["-Ln", "--stats", "--exact"])
        .lines()
        .filter(|l| l.starts_with("TCP"))
        .filter_map(|l| {
            let mut words = l.split_whitespace().skip(1);
            Some((words.next()?.to_owned(), words.next()?.parse().ok()?))
        })
        .collect()
}

/// The service lines of the state file at `path` (its copy aside).
fn recorded(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    lines
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_kube_proxy_table_is_adopted_without_a_dropped_connection() {
    let cluster = Cluster::new();
    // pod-b's echo server, the long Service's.
    echo_server(&cluster.pods[1], 7000);

    // What kube-proxy left on node1, then it stopped.
    let restored = run_as(&ipvsadm(), "ipvsadm", &["-R"], KUBE_PROXY_TABLE.as_bytes());
    assert_eq!(restored.code, Some(0), "{restored}");
    vm_tests::sh("/sbin/ip link add kube-ipvs0 type dummy");
    for ip in KUBE_IPVS0 {
        vm_tests::sh(&format!("/sbin/ip addr add {ip}/32 dev kube-ipvs0"));
    }
    for (name, value) in [
        ("net/ipv4/vs/conntrack", "1"),
        ("net/ipv4/vs/expire_nodest_conn", "1"),
        ("net/ipv4/vs/expire_quiescent_template", "1"),
    ] {
        vm_tests::sysctl(name, value);
    }
    let left = table();

    let dir = std::env::temp_dir().join("migrate");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("owned");
    let server = FakeApiServer::start().unwrap();
    std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).unwrap();
    server.batch(objects());

    let to_web = sa("10.96.0.10", 8080);
    cluster
        .run(Host::ClientOut, move || tcp_flow(to_web))
        .unwrap_or_else(|e| panic!("kube-proxy's table does not serve the client: {e}"));

    let traffic = Traffic::start(&cluster, to_web, sa("10.96.0.20", 7000));
    // The real ipvsadm's view, all along, from two threads (a look of
    // each is a process, slow under emulation): the table kube-proxy left,
    // and connection counters that never go down (a service removed and
    // added again would start them at 0).
    let watcher = {
        let (stop, errors, left) = (traffic.stopped(), traffic.errors(), left.clone());
        std::thread::spawn(move || {
            let mut looks = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let now = table();
                if now != left {
                    errors.lock().unwrap().push(format!(
                        "the table changed:\n{}",
                        vm_tests::diff(&left.join("\n"), &now.join("\n"))
                    ));
                }
                looks += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            looks
        })
    };
    let counters = {
        let (stop, errors) = (traffic.stopped(), traffic.errors());
        let services = left.iter().filter(|l| l.starts_with("-A")).count();
        std::thread::spawn(move || {
            let mut looks = 0u64;
            let mut last: Vec<(String, u64)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let now = conns();
                for (vip, had) in &last {
                    match now.iter().find(|(v, _)| v == vip) {
                        Some((_, c)) if c >= had => {}
                        other => errors
                            .lock()
                            .unwrap()
                            .push(format!("{vip}: connections {other:?} after {had}")),
                    }
                }
                if now.len() != services {
                    errors
                        .lock()
                        .unwrap()
                        .push(format!("services missing: {now:?}"));
                }
                last = now;
                looks += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            looks
        })
    };
    traffic.phase("kube-proxy's table alone");

    // 1. Without --adopt: everything of kube-proxy's left alone, said.
    let mut live = start(&dir, false);
    live.until_logged("the start without --adopt synced", PATIENCE, synced);
    let log = live.log();
    for (vip, origin) in [
        ("10.96.0.10:8080", "default/web:http"),
        ("192.168.1.1:30080", "default/web:http"),
        ("10.96.0.20:7000", "default/long:echo"),
        ("10.96.0.30:8080", "default/sticky:http"),
        ("10.96.0.40:8080", "default/odd:http"),
    ] {
        let note = format!(
            "TCP {vip} ({origin}) is held by a virtual service ipvsadm-rs did not create: left alone"
        );
        assert!(log.contains(&note), "no `{note}` in:\n{log}");
    }
    assert!(!log.contains("adopted"), "{log}");
    assert_eq!(recorded(&state), Vec::<String>::new());
    traffic.phase("without --adopt");
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");

    // 2. With --adopt: what matches is ours, the rest left alone, said.
    let mut live = start(&dir, true);
    live.until_logged("the start with --adopt synced", PATIENCE, synced);
    let log = live.log();
    for vip in ADOPTED {
        let note = format!("TCP {vip} (");
        let line = log
            .lines()
            .find(|l| l.contains(&note) && l.contains(") adopted: "));
        assert!(line.is_some(), "{vip} not adopted:\n{log}");
    }
    for note in [
        "TCP 10.96.0.40:8080 (default/odd:http) is held by a virtual service ipvsadm-rs did not create: left alone, not adopted: scheduler wlc, the mapping writes rr",
        "TCP 10.200.0.1:80 is a virtual service ipvsadm-rs did not create and no Service wants: left alone, not adopted",
    ] {
        assert!(log.contains(note), "no `{note}` in:\n{log}");
    }
    assert!(
        log.contains(" virtual services; 0 writes"),
        "the adopting sync wrote to IPVS:\n{log}"
    );
    let mut want: Vec<String> = ADOPTED.iter().map(|a| format!("tcp {a}")).collect();
    want.sort();
    assert_eq!(recorded(&state), want);
    traffic.phase("after the switch with --adopt");

    // 3. The state file lost (cut to nothing, its copy gone): refused
    // without --adopt, naming it; recovered with it.
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");
    std::fs::write(&state, "").unwrap();
    std::fs::remove_file(dir.join("owned.bak")).unwrap();
    let (code, log) = start(&dir, false).wait();
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("is lost, so nothing was changed. To go on: run it again with --adopt"),
        "{log}"
    );
    traffic.phase("a refused start after the state file was lost");
    let mut live = start(&dir, true);
    live.until_logged("the recovering start synced", PATIENCE, synced);
    let log = live.log();
    assert!(log.contains("is lost; --adopt takes over"), "{log}");
    assert_eq!(log.matches(") adopted: ").count(), ADOPTED.len(), "{log}");
    assert!(log.contains(" virtual services; 0 writes"), "{log}");
    assert_eq!(recorded(&state), want);
    traffic.phase("after the recovery with --adopt");

    traffic.stop();
    let looks = watcher.join().unwrap() + counters.join().unwrap();
    let report = traffic.finish();
    let (code, log) = live.terminate();
    assert_eq!(code, Some(0), "{log}");
    // The addresses kube-proxy bound are all still there.
    let addrs = vm_tests::sh("/sbin/ip -o addr show dev kube-ipvs0");
    for ip in KUBE_IPVS0 {
        assert!(addrs.contains(&format!("{ip}/32")), "{ip}: {addrs}");
    }
    eprintln!(
        "{}; the table read {looks} times by the real ipvsadm",
        report.summary()
    );
    report.assert_clean();
}

/// What kube-router writes for Services annotated with its scheduler
/// (pkg/controllers/proxy: the scheduler from
/// `kube-router.io/service.scheduler`, its flags from
/// `kube-router.io/service.schedflags` with `mh` only; masquerading real
/// servers of weight 1; the ClusterIPs on `kube-dummy-if`).
const KUBE_ROUTER_TABLE: &str = "\
-A -t 10.96.5.1:80 -s mh -b flag-1,flag-2
-a -t 10.96.5.1:80 -r 10.244.1.5:80 -m -w 1
-A -t 10.96.5.2:80 -s lc
-a -t 10.96.5.2:80 -r 10.244.1.6:80 -m -w 1
";

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_kube_router_table_is_adopted_with_its_annotated_schedulers() {
    vm_tests::enter_fresh_netns().unwrap();
    let restored = run_as(&ipvsadm(), "ipvsadm", &["-R"], KUBE_ROUTER_TABLE.as_bytes());
    assert_eq!(restored.code, Some(0), "{restored}");
    vm_tests::sh(
        "/sbin/ip link add kube-dummy-if type dummy && \
         /sbin/ip addr add 10.96.5.1/32 dev kube-dummy-if && \
         /sbin/ip addr add 10.96.5.2/32 dev kube-dummy-if",
    );
    let left = table();
    let dump = r#"{"kind":"List","apiVersion":"v1","items":[
      {"apiVersion":"v1","kind":"Service","metadata":{"name":"maglev","namespace":"default",
        "annotations":{"kube-router.io/service.scheduler":"mh","kube-router.io/service.schedflags":"flag-1,flag-2"}},
       "spec":{"clusterIP":"10.96.5.1","ports":[{"port":80}]}},
      {"apiVersion":"v1","kind":"Service","metadata":{"name":"least","namespace":"default",
        "annotations":{"kube-router.io/service.scheduler":"lc"}},
       "spec":{"clusterIP":"10.96.5.2","ports":[{"port":80}]}},
      {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"maglev-1","namespace":"default",
        "labels":{"kubernetes.io/service-name":"maglev"}},
       "addressType":"IPv4","ports":[{"port":80}],"endpoints":[{"addresses":["10.244.1.5"]}]},
      {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"least-1","namespace":"default",
        "labels":{"kubernetes.io/service-name":"least"}},
       "addressType":"IPv4","ports":[{"port":80}],"endpoints":[{"addresses":["10.244.1.6"]}]}]}"#;
    let state = vm_tests::k8s_state("kube-router");
    let args = ["--interface", "kube-dummy-if", "--no-nftables"];
    // Without --adopt: both left alone.
    let out = vm_tests::from_k8s(dump, &state, &args);
    assert_eq!(out.code, Some(1), "{out}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("did not create: left alone").count(),
        2,
        "{err}"
    );
    // With it: both adopted, nothing written, the addresses kept.
    let out = vm_tests::from_k8s(dump, &state, &[&args[..], &["--adopt"]].concat());
    assert_eq!(out.code, Some(0), "{out}");
    let err = String::from_utf8_lossy(&out.stderr);
    for note in [
        "TCP 10.96.5.1:80 (default/maglev:80) adopted",
        "TCP 10.96.5.2:80 (default/least:80) adopted",
    ] {
        assert!(err.contains(note), "no `{note}` in:\n{err}");
    }
    assert_eq!(table(), left);
    assert_eq!(recorded(&state), ["tcp 10.96.5.1:80", "tcp 10.96.5.2:80"]);
    let addrs = vm_tests::sh("/sbin/ip -o addr show dev kube-dummy-if");
    for ip in ["10.96.5.1/32", "10.96.5.2/32"] {
        assert!(addrs.contains(ip), "{ip}: {addrs}");
    }
    // The annotations gone: the mapping writes rr, which is no longer
    // what the table has; the services are ours, so they are edited.
    let plain = dump.replace("\"annotations\"", "\"ignored\"");
    let out = vm_tests::from_k8s(&plain, &state, &args);
    assert_eq!(out.code, Some(0), "{out}");
    let now = ipvsadm_ok(&["-Sn"]);
    assert!(now.contains("-A -t 10.96.5.1:80 -s rr\n"), "{now}");
    assert!(now.contains("-A -t 10.96.5.2:80 -s rr\n"), "{now}");
}
