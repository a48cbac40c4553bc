//! The node side of `--from-k8s` against the real kernel: the dummy
//! interface and its addresses, the sysctls, the kube-proxy check, and
//! graceful termination with real TCP connections through a virtual
//! address bound by the sync.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ipvs_netlink::{Handle, Protocol, ServiceId};
use vm_tests::lab::{Lab, HOLD, REALS};
use vm_tests::{enter_fresh_netns, from_k8s, ipvsadm, k8s_state, run_as, Outcome};

const SYNC_1: &str = include_str!("../../ipvs-k8s/tests/dumps/sync-1.json");
const SYNC_2: &str = include_str!("../../ipvs-k8s/tests/dumps/sync-2.json");
const DUALSTACK: &str = include_str!("../../ipvs-k8s/tests/dumps/dualstack.json");
const EMPTY: &str = r#"{"kind":"List","apiVersion":"v1","items":[]}"#;

/// The sysctls IPVS mode wants, as a table of (file, wanted value).
const SYSCTLS: [(&str, &str); 4] = [
    ("net/ipv4/vs/conntrack", "1"),
    ("net/ipv4/vs/expire_nodest_conn", "1"),
    ("net/ipv4/vs/expire_quiescent_template", "1"),
    ("net/ipv4/ip_forward", "1"),
];

fn sysctl(file: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{file}"))
        .unwrap()
        .trim()
        .to_owned()
}

fn set_sysctl(file: &str, value: &str) {
    std::fs::write(format!("/proc/sys/{file}"), value).unwrap();
}

/// The sysctls as IPVS mode wants them, so no warning is printed.
fn sysctls_ok() {
    for (file, value) in SYSCTLS {
        set_sysctl(file, value);
    }
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

fn state(test: &str) -> PathBuf {
    k8s_state(&format!("node-{test}"))
}

fn shell(cmd: &str) -> Outcome {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    Outcome {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// The addresses of `iface` (`10.96.0.1/32`), link-local ones aside;
/// panics if one of them is still tentative (not usable yet).
fn addresses(iface: &str) -> BTreeSet<String> {
    let out = shell(&format!("ip -o addr show dev {iface}"));
    assert_eq!(out.code, Some(0), "{out}");
    let listing = text(&out.stdout);
    assert!(!listing.contains("tentative"), "{listing}");
    let mut words = listing.split_whitespace();
    let mut found = BTreeSet::new();
    while let Some(w) = words.next() {
        if w == "inet" || w == "inet6" {
            let addr = words.next().unwrap();
            if !addr.starts_with("fe80:") {
                found.insert(addr.to_owned());
            }
        }
    }
    found
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn saved() -> String {
    let out = run_as(&ipvsadm(), "ipvsadm", &["-Sn"], b"");
    assert_eq!(out.code, Some(0), "{out}");
    let mut lines: Vec<&str> = text(&out.stdout).lines().collect();
    lines.sort_unstable();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn the_dummy_interface_holds_exactly_the_addresses_of_the_services() {
    enter_fresh_netns().unwrap();
    sysctls_ok();
    let state = state("addresses");
    assert_ne!(shell("ip link show kube-ipvs0").code, Some(0));

    // A dry run creates nothing and says what it would do.
    let dry = from_k8s(SYNC_1, &state, &["--dry-run"]);
    assert_eq!(dry.code, Some(0), "{dry}");
    let said = text(&dry.stderr);
    assert!(
        said.contains("ipvsadm-rs: --from-k8s -: would create dummy interface kube-ipvs0\n"),
        "{said}"
    );
    assert!(
        said.contains("ipvsadm-rs: --from-k8s -: would bind 10.96.0.1 to kube-ipvs0\n"),
        "{said}"
    );
    assert!(!said.contains("192.168.49.2"), "{said}");
    assert_ne!(shell("ip link show kube-ipvs0").code, Some(0));

    // The sync creates the dummy (down, as kube-proxy's) and binds every
    // ClusterIP, not the node address of the NodePort.
    let first = from_k8s(SYNC_1, &state, &[]);
    assert_eq!(first.code, Some(0), "{first}");
    assert_eq!(text(&first.stderr), "");
    let link = shell("ip link show kube-ipvs0");
    assert!(
        text(&link.stdout).contains("<BROADCAST,NOARP>"),
        "a dummy, down: {link}"
    );
    let sync_1 = set(&[
        "10.96.0.1/32",
        "10.96.0.10/32",
        "10.96.10.10/32",
        "10.96.60.60/32",
        "10.96.99.99/32",
    ]);
    assert_eq!(addresses("kube-ipvs0"), sync_1);
    // Packets to them are the node's own, so IPVS sees them.
    let local = shell("ip route show table local");
    assert!(
        text(&local.stdout).contains("local 10.96.60.60 dev kube-ipvs0"),
        "{local}"
    );

    // An address someone else put there and the deleted Service's go;
    // the new Service's comes.
    assert_eq!(
        shell("ip addr add 10.96.200.200/32 dev kube-ipvs0").code,
        Some(0)
    );
    let second = from_k8s(SYNC_2, &state, &[]);
    assert_eq!(second.code, Some(0), "{second}");
    assert_eq!(
        addresses("kube-ipvs0"),
        set(&[
            "10.96.0.1/32",
            "10.96.0.10/32",
            "10.96.10.10/32",
            "10.96.70.70/32",
            "10.96.99.99/32",
        ])
    );

    // Nothing wanted: the interface stays, empty.
    let empty = from_k8s(EMPTY, &state, &[]);
    assert_eq!(empty.code, Some(0), "{empty}");
    assert_eq!(addresses("kube-ipvs0"), BTreeSet::new());
    assert_eq!(saved(), "");

    // Dual stack, on an interface of another name: /32 and /128, the
    // IPv6 ones usable at once (not tentative).
    let dual = from_k8s(DUALSTACK, &state, &["--interface", "ipvs-test0"]);
    assert_eq!(dual.code, Some(0), "{dual}");
    let bound = addresses("ipvs-test0");
    assert!(bound.contains("10.96.40.40/32"), "{bound:?}");
    assert!(bound.contains("fd00:10:96::4040/128"), "{bound:?}");
    assert!(bound.contains("fd00:10:96::5050/128"), "{bound:?}");
    assert!(bound
        .iter()
        .all(|a| a.ends_with("/32") || a.ends_with("/128")));
    let local6 = shell("ip -6 route show table local");
    assert!(
        text(&local6.stdout).contains("local fd00:10:96::4040 dev ipvs-test0"),
        "{local6}"
    );
    assert_eq!(addresses("kube-ipvs0"), BTreeSet::new());
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn failed_creations_bind_nothing_and_a_non_dummy_interface_is_refused() {
    enter_fresh_netns().unwrap();
    sysctls_ok();
    let state = state("refused");
    // Not a dummy: refused before anything is written.
    let lo = from_k8s(SYNC_1, &state, &["--interface", "lo"]);
    assert_eq!(lo.code, Some(2), "{lo}");
    assert_eq!(
        text(&lo.stderr),
        "ipvsadm-rs: --from-k8s -: interface lo exists and is not a dummy interface (kind none): refusing to manage its addresses\n"
    );
    assert_eq!(saved(), "");
    assert!(addresses("lo").contains("127.0.0.1/8"));
    // Nor a state file, a lock file or a dummy interface.
    assert!(!state.exists(), "{}", state.display());
    assert!(!state.with_file_name("owned.lock").exists());
    // The kernel's list of interfaces (whichever `ip` the shell runs).
    assert!(!std::path::Path::new("/sys/class/net/kube-ipvs0").exists());

    // Every creation fails: no address for a service that is not there.
    let failed = from_k8s(SYNC_1, &state, &["-s", "nosuch"]);
    assert_eq!(failed.code, Some(1), "{failed}");
    assert_eq!(saved(), "");
    assert_eq!(addresses("kube-ipvs0"), BTreeSet::new());
    // A service another tool holds: its address is not bound either.
    let out = run_as(&ipvsadm(), "ipvsadm", &["-A", "-t", "10.96.99.99:80"], b"");
    assert_eq!(out.code, Some(0), "{out}");
    let taken = from_k8s(SYNC_1, &state, &[]);
    assert_eq!(taken.code, Some(1), "{taken}");
    let bound = addresses("kube-ipvs0");
    assert!(!bound.contains("10.96.99.99/32"), "{bound:?}");
    assert!(bound.contains("10.96.0.1/32"), "{bound:?}");
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn sysctls_are_reported_then_set() {
    enter_fresh_netns().unwrap();
    for (file, _) in SYSCTLS {
        set_sysctl(file, "0");
    }
    let state = state("sysctls");
    let warned = from_k8s(EMPTY, &state, &[]);
    assert_eq!(warned.code, Some(0), "{warned}");
    let mut want = String::new();
    for (file, value) in SYSCTLS {
        let name = file.replace('/', ".");
        want.push_str(&format!(
            "ipvsadm-rs: --from-k8s -: warning: {name} is 0; IPVS mode wants {value} (--set-sysctls sets it)\n"
        ));
    }
    assert_eq!(text(&warned.stderr), want);
    assert!(SYSCTLS.iter().all(|(file, _)| sysctl(file) == "0"));

    // A dry run with --set-sysctls says what it would set, sets nothing.
    let dry = from_k8s(EMPTY, &state, &["--set-sysctls", "--dry-run"]);
    assert!(
        text(&dry.stderr).contains("would set net.ipv4.vs.conntrack to 1 (it is 0)"),
        "{dry}"
    );
    assert_eq!(sysctl("net/ipv4/vs/conntrack"), "0");

    let set = from_k8s(EMPTY, &state, &["--set-sysctls"]);
    assert_eq!(set.code, Some(0), "{set}");
    let mut want = String::new();
    for (file, value) in SYSCTLS {
        let name = file.replace('/', ".");
        want.push_str(&format!(
            "ipvsadm-rs: --from-k8s -: set {name} to {value} (it was 0)\n"
        ));
    }
    assert_eq!(text(&set.stderr), want);
    for (file, value) in SYSCTLS {
        assert_eq!(sysctl(file), value, "{file}");
    }
    // Right now: nothing said.
    let quiet = from_k8s(EMPTY, &state, &[]);
    assert_eq!((quiet.code, text(&quiet.stderr)), (Some(0), ""), "{quiet}");
}

/// A process named `kube-proxy` (busybox `sh` run through a link of that
/// name, blocked in the `read` builtin) with `args` on its command line,
/// in the caller's network namespace. It ends when its stdin is closed.
fn fake_kube_proxy(dir: &Path, args: &[&str]) -> Child {
    let sh = std::fs::canonicalize(
        std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|p| p.join("sh"))
            .find(|p| p.exists())
            .unwrap(),
    )
    .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let link = dir.join("kube-proxy");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&sh, &link).unwrap();
    let child = Command::new(&link)
        .arg0("sh")
        .args(["-c", "read x", "kube-proxy"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Running once /proc shows its name.
    let comm = format!("/proc/{}/comm", child.id());
    while std::fs::read_to_string(&comm).unwrap_or_default() != "kube-proxy\n" {
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

fn stop(mut child: Child) {
    drop(child.stdin.take());
    child.wait().unwrap();
}

/// A kube-proxy metrics server on 127.0.0.1:10249 answering `/proxyMode`
/// with `mode`, for `n` requests.
fn fake_metrics(mode: &'static str, n: usize) -> std::thread::JoinHandle<()> {
    let listener = TcpListener::bind("127.0.0.1:10249").unwrap();
    std::thread::spawn(move || {
        for _ in 0..n {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 512];
            let got = s.read(&mut req).unwrap();
            assert!(req[..got].starts_with(b"GET /proxyMode "));
            let reply = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n{mode}");
            s.write_all(reply.as_bytes()).unwrap();
        }
    })
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn kube_proxy_in_ipvs_mode_is_refused_unless_forced() {
    enter_fresh_netns().unwrap();
    sysctls_ok();
    let state = state("kube-proxy");
    let dir = std::env::temp_dir().join("fake-kube-proxy");

    let kp = fake_kube_proxy(&dir, &["--proxy-mode=ipvs", "--v=2"]);
    let pid = kp.id();
    let refused = from_k8s(SYNC_1, &state, &[]);
    assert_eq!(refused.code, Some(2), "{refused}");
    assert_eq!(
        text(&refused.stderr),
        format!(
            "ipvsadm-rs: --from-k8s -: kube-proxy runs in IPVS mode in this network namespace (pid {pid}, --proxy-mode ipvs): \
             two reconcilers would fight over the IPVS table. Stop it or move it to another mode, or pass --force\n"
        )
    );
    assert_eq!(saved(), "");
    assert_ne!(shell("ip link show kube-ipvs0").code, Some(0));
    assert!(!state.exists());
    // A dry run writes nothing: it warns and goes on.
    let dry = from_k8s(SYNC_1, &state, &["--dry-run"]);
    assert_eq!(dry.code, Some(0), "{dry}");
    assert!(
        text(&dry.stderr).contains("without --force a real run would refuse to start"),
        "{dry}"
    );
    // --force: it runs, and says the two will fight.
    let forced = from_k8s(SYNC_1, &state, &["--force"]);
    assert_eq!(forced.code, Some(0), "{forced}");
    assert!(
        text(&forced.stderr).contains("going on because of --force"),
        "{forced}"
    );
    assert!(saved().contains("-A -t 10.96.0.1:443 -s rr\n"));
    stop(kp);

    // kube-proxy in iptables mode does not touch IPVS: no refusal.
    let kp = fake_kube_proxy(&dir, &["--proxy-mode", "iptables"]);
    let other = from_k8s(SYNC_1, &state, &[]);
    assert_eq!((other.code, text(&other.stderr)), (Some(0), ""), "{other}");
    stop(kp);

    // Its mode in a config file: not known, so refused.
    let kp = fake_kube_proxy(&dir, &["--config=/var/lib/kube-proxy/config.conf"]);
    let unknown = from_k8s(SYNC_1, &state, &[]);
    assert_eq!(unknown.code, Some(2), "{unknown}");
    assert!(
        text(&unknown.stderr).contains("its mode is not on its command line"),
        "{unknown}"
    );
    // ... unless its metrics server says which mode it is in.
    let metrics = fake_metrics("iptables", 1);
    let told = from_k8s(SYNC_1, &state, &[]);
    assert_eq!((told.code, text(&told.stderr)), (Some(0), ""), "{told}");
    metrics.join().unwrap();
    stop(kp);

    // No process to see (a pod without the host's PID namespace), but the
    // metrics server answers ipvs.
    let metrics = fake_metrics("ipvs", 1);
    let by_metrics = from_k8s(EMPTY, &state, &[]);
    assert_eq!(by_metrics.code, Some(2), "{by_metrics}");
    assert!(
        text(&by_metrics.stderr).contains(
            "kube-proxy runs in IPVS mode on this node (http://127.0.0.1:10249/proxyMode answers ipvs)"
        ),
        "{by_metrics}"
    );
    metrics.join().unwrap();
    // The table was left as it was.
    assert!(saved().contains("-A -t 10.96.0.1:443 -s rr\n"));
}

const VIP: &str = "10.96.50.50";

/// A Service with a TCP port on the lab's holding servers and a UDP port
/// on its echo servers, with these endpoints.
fn web(endpoints: &[&str]) -> String {
    let eps: Vec<String> = endpoints
        .iter()
        .map(|ip| format!(r#"{{"addresses":["{ip}"],"conditions":{{"ready":true}}}}"#))
        .collect();
    format!(
        r#"{{"kind":"List","apiVersion":"v1","items":[
        {{"apiVersion":"v1","kind":"Service","metadata":{{"name":"web","namespace":"default"}},
          "spec":{{"type":"ClusterIP","clusterIP":"{VIP}","clusterIPs":["{VIP}"],
            "ports":[{{"name":"hold","port":{HOLD},"protocol":"TCP","targetPort":{HOLD}}},
                     {{"name":"dns","port":53,"protocol":"UDP","targetPort":53}}]}}}},
        {{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
          "metadata":{{"name":"web-1","namespace":"default","labels":{{"kubernetes.io/service-name":"web"}}}},
          "addressType":"IPv4","endpoints":[{eps}],
          "ports":[{{"name":"hold","port":{HOLD},"protocol":"TCP"}},{{"name":"dns","port":53,"protocol":"UDP"}}]}}]}}"#,
        eps = eps.join(",")
    )
}

/// (weight, active, inactive) of each real server of a service, by address.
fn dests(id: &ServiceId) -> Vec<(SocketAddr, u32, u32, u32)> {
    let mut h = Handle::new().unwrap();
    let mut out: Vec<_> = h
        .destinations(id)
        .unwrap()
        .iter()
        .map(|d| (d.socket_addr(), d.weight, d.active_conns, d.inactive_conns))
        .collect();
    out.sort();
    out
}

/// Polls the kernel until `done` holds of the service's real servers
/// (bounded only to fail instead of hanging).
fn wait_for(id: &ServiceId, what: &str, done: impl Fn(&[(SocketAddr, u32, u32, u32)]) -> bool) {
    for _ in 0..1500 {
        if done(&dests(id)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("never {what}: {:?}", dests(id));
}

fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_tcp_real_server_that_goes_drains_at_weight_0_until_its_connection_ends() {
    let mut lab = Lab::new(&[]);
    sysctls_ok();
    let state = state("graceful");
    let (a, b) = (REALS[0], REALS[1]);
    let tcp = ServiceId::tcp(sa(VIP, HOLD));
    let udp = ServiceId::inet(Protocol::Udp, sa(VIP, 53));

    let first = from_k8s(&web(&[a]), &state, &[]);
    assert_eq!((first.code, text(&first.stderr)), (Some(0), ""), "{first}");
    // The address is on kube-ipvs0 only (not on lo as the lab's VIPs):
    // a connection through it reaches the real server.
    assert_eq!(addresses("kube-ipvs0"), set(&[&format!("{VIP}/32")]));
    lab.tcp(sa(VIP, HOLD), |s| s.write_all(b"held").is_ok())
        .unwrap();
    wait_for(&tcp, "saw the connection established", |d| {
        d == [(sa(a, HOLD), 1, 1, 0)]
    });
    assert_eq!(lab.udp(sa(VIP, 53), b"ping").unwrap(), b"ping");
    let udp_conns = dests(&udp);
    assert_eq!(udp_conns.len(), 1);
    assert!(udp_conns[0].2 + udp_conns[0].3 > 0, "{udp_conns:?}");

    // The endpoint moves from a to b. TCP: a drains at weight 0 while its
    // connection lives. UDP: a is deleted at once, connections or not.
    let moved = from_k8s(&web(&[b]), &state, &[]);
    assert_eq!(moved.code, Some(0), "{moved}");
    assert_eq!(
        text(&moved.stderr),
        "ipvsadm-rs: --from-k8s -: 1 real server(s) with open TCP connections kept at weight 0; a later sync removes them once idle\n"
    );
    assert_eq!(
        dests(&tcp),
        vec![(sa(a, HOLD), 0, 1, 0), (sa(b, HOLD), 1, 0, 0)]
    );
    assert_eq!(
        dests(&udp).iter().map(|d| (d.0, d.1)).collect::<Vec<_>>(),
        vec![(sa(b, 53), 1)]
    );
    // New connections go to b only.
    lab.tcp(sa(VIP, HOLD), |s| s.write_all(b"new").is_ok())
        .unwrap();
    wait_for(&tcp, "saw the new connection on b", |d| {
        d == [(sa(a, HOLD), 0, 1, 0), (sa(b, HOLD), 1, 1, 0)]
    });

    // A sync while it drains changes nothing.
    let again = from_k8s(&web(&[b]), &state, &["--dry-run"]);
    assert_eq!((again.code, text(&again.stdout)), (Some(0), ""), "{again}");
    // a comes back while draining: its weight is restored; then it goes
    // again and drains again.
    let back = from_k8s(&web(&[a, b]), &state, &["--dry-run"]);
    assert_eq!(
        text(&back.stdout),
        format!("-e -t {VIP}:{HOLD} -r {a}:{HOLD} -m -w 1\n-a -u {VIP}:53 -r {a}:53 -m -w 1\n")
    );
    let back = from_k8s(&web(&[a, b]), &state, &[]);
    assert_eq!(back.code, Some(0), "{back}");
    assert_eq!(dests(&tcp)[0].1, 1);
    let gone = from_k8s(&web(&[b]), &state, &[]);
    assert_eq!(gone.code, Some(0), "{gone}");
    assert_eq!(dests(&tcp)[0], (sa(a, HOLD), 0, 1, 0));

    // The connection to a ends (reset by the client); once the kernel
    // counts no connection to a, the next sync deletes it.
    let held = lab.held.remove(0);
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a linger struct of the
    // size given.
    let rc = unsafe {
        libc::setsockopt(
            held.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(held);
    wait_for(&tcp, "saw a idle", |d| {
        d[0].0 == sa(a, HOLD) && d[0].2 + d[0].3 == 0
    });
    let last = from_k8s(&web(&[b]), &state, &[]);
    assert_eq!((last.code, text(&last.stderr)), (Some(0), ""), "{last}");
    assert_eq!(
        saved(),
        format!(
            "-A -t {VIP}:{HOLD} -s rr\n-A -u {VIP}:53 -s rr\n-a -t {VIP}:{HOLD} -r {b}:{HOLD} -m -w 1\n-a -u {VIP}:53 -r {b}:53 -m -w 1\n"
        )
    );
    // The Service goes: its virtual services (b's connection still open)
    // and its address go at once, as kube-proxy deletes them.
    assert_eq!(lab.held.len(), 1);
    let end = from_k8s(EMPTY, &state, &[]);
    assert_eq!(end.code, Some(0), "{end}");
    assert_eq!(saved(), "");
    assert_eq!(addresses("kube-ipvs0"), BTreeSet::new());
}

/// Issue 34: a run with a state file of its own takes the services of a
/// first run (another state file) for another tool's, and never strips
/// their addresses from the dummy interface; an address of no service
/// still goes.
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn addresses_of_services_another_instance_owns_are_never_removed() {
    enter_fresh_netns().unwrap();
    sysctls_ok();
    let first_state = state("instance-a");
    let second_state = state("instance-b");
    let first = from_k8s(SYNC_1, &first_state, &[]);
    assert_eq!(first.code, Some(0), "{first}");
    let sync_1 = addresses("kube-ipvs0");
    assert!(sync_1.contains("10.96.60.60/32"), "{sync_1:?}");
    let table = saved();
    assert_eq!(
        shell("ip addr add 10.96.200.200/32 dev kube-ipvs0").code,
        Some(0)
    );
    let second = from_k8s(EMPTY, &second_state, &[]);
    assert_eq!(second.code, Some(0), "{second}");
    assert_eq!(addresses("kube-ipvs0"), sync_1);
    assert_eq!(saved(), table);
}
