//! The fuzz targets as plain functions of bytes.
//!
//! `fuzz/` wraps each in `afl::fuzz!` (coverage-guided, on the stable
//! toolchain); `tests/tests/fuzz_corpus.rs` replays the checked-in corpus
//! and every crash found through the same functions in the normal test
//! suite. A target panics (the fuzzer's crash) only when the code under
//! test panics or breaks an invariant asserted here.
//!
//! The targets that run ipvsadm-rs (`argv`, `restore`) may resolve host
//! names; the fuzzer runs them in a network namespace of their own
//! (`fuzz/run.sh`) and the replay through [`offline`], so that no lookup
//! leaves the machine.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use ipvs_netlink::netlink_packet_core::{
    Emitable, NetlinkMessage, NetlinkPayload, Nla, NLM_F_ACK, NLM_F_DUMP,
};
use ipvs_netlink::netlink_packet_generic::GenlMessage;
use ipvs_netlink::{
    AddressFamily, Daemon, DaemonAttr, Destination, Handle, Info, InfoAttr, IpvsAttr, IpvsCmd,
    IpvsMessage, Service, ServiceAttr, ServiceId, Stats,
};
use ipvsadm_rs::commands;
use ipvsadm_rs::format::fmt;
use ipvsadm_rs::io::{Flow, Out};
use ipvsadm_rs::names::Numeric;
use nix::sys::socket::{
    send, shutdown, socketpair, AddressFamily as SockFamily, MsgFlags, Shutdown, SockFlag, SockType,
};

use crate::{
    ack, ctrl_family_reply, dest_part, done, ipvs_message, Action, FakeKernel, Request, FAMILY_ID,
    PORT_ID,
};

type Msg = NetlinkMessage<GenlMessage<IpvsMessage>>;

/// The names of the targets, as `fuzz/src/bin/` and `fuzz/corpus/` name them.
/// (`k8s_json` only with the `k8s` feature, on by default.)
pub const TARGETS: &[&str] = &[
    "netlink_packet",
    "handle_reply",
    "argv",
    "restore",
    "conn_line",
    #[cfg(feature = "k8s")]
    "k8s_json",
];

/// Runs the target called `name` on `data`; false for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "netlink_packet" => netlink_packet(data),
        "handle_reply" => handle_reply(data),
        "argv" => argv(data),
        "restore" => restore(data),
        "conn_line" => conn_line(data),
        #[cfg(feature = "k8s")]
        "k8s_json" => k8s_json(data),
        _ => return false,
    }
    true
}

// ---------------------------------------------------------------------------
// netlink_packet: any bytes as one reply message

/// Any bytes as one netlink message from the kernel: parsed with the
/// packet layer, re-emitted, and every nest read into the typed model,
/// whose attributes are emitted again.
pub fn netlink_packet(data: &[u8]) {
    let Ok(mut msg) = Msg::deserialize(data) else {
        return;
    };
    // What parsed emits again, with its length recomputed: a parsed
    // header keeps the length field it came with, which may overstate
    // the message (netlink-packet-core then slices past the end: callers
    // must `finalize` first; the handle never re-emits a reply). The
    // emitted bytes parse, and emit again to the same bytes. (Not to the
    // input's bytes: an unknown attribute's NLA_F_NET_BYTEORDER flag is
    // dropped by netlink-packet-core's `DefaultNla`.)
    msg.finalize();
    let once = serialize(&msg);
    let back = match Msg::deserialize(&once) {
        Ok(back) => back,
        Err(e) => panic!("{msg:?} emitted as {once:02x?}, which does not parse: {e}"),
    };
    assert_eq!(
        serialize(&back),
        once,
        "a second round trip changed {msg:?}"
    );
    let NetlinkPayload::InnerMessage(genl) = &msg.payload else {
        return;
    };
    let family = if data.first().is_some_and(|b| b & 1 == 1) {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let mut info = Vec::new();
    for attr in &genl.payload.attrs {
        match attr {
            IpvsAttr::Service(attrs) => {
                if let Ok(id) = ServiceId::from_attrs(attrs) {
                    emit_all(&id.to_attrs());
                }
                if let Ok(svc) = Service::from_attrs(attrs) {
                    emit_all(&svc.to_attrs());
                    if let Some(stats) = &svc.stats {
                        emit_all(&[
                            <ServiceAttr>::Stats(stats.to_attrs()),
                            ServiceAttr::Stats64(stats.to_attrs()),
                        ]);
                    }
                    // The list formats must print any service the model
                    // accepts.
                    let _ = ipvsadm_rs::format::list::service_entry(
                        &svc,
                        &[],
                        fmt::NUMERIC | fmt::STATS,
                        &Numeric,
                    );
                }
            }
            IpvsAttr::Dest(attrs) => {
                if let Ok(dest) = Destination::from_attrs(attrs, family) {
                    emit_all(&dest.to_attrs());
                    let svc =
                        Service::new(ServiceId::tcp(SocketAddr::from(([1, 2, 3, 4], 80))), "rr");
                    for format in [
                        fmt::NUMERIC,
                        fmt::NUMERIC | fmt::RATE,
                        fmt::NUMERIC | fmt::THRESHOLDS | fmt::TUN_INFO,
                    ] {
                        let _ = ipvsadm_rs::format::list::service_entry(
                            &svc,
                            std::slice::from_ref(&dest),
                            format,
                            &Numeric,
                        );
                    }
                }
            }
            IpvsAttr::Daemon(attrs) => {
                if let Ok(d) = Daemon::from_attrs(attrs) {
                    emit_all::<DaemonAttr>(&d.to_attrs());
                    let _ = ipvsadm_rs::format::list::daemons(&[d]);
                }
            }
            IpvsAttr::Info(i) => info.push(i.clone()),
            _ => {}
        }
    }
    if let Ok(i) = Info::from_attrs(&info) {
        emit_all::<InfoAttr>(&i.to_attrs());
        let _ = ipvsadm_rs::format::list::version_line(&i);
    }
}

fn serialize(msg: &Msg) -> Vec<u8> {
    let mut out = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut out);
    out
}

fn emit_all<E: Nla>(attrs: &[E]) {
    let mut out = vec![0u8; Emitable::buffer_len(&attrs)];
    Emitable::emit(&attrs, &mut out);
}

// ---------------------------------------------------------------------------
// handle_reply: any datagrams as the kernel's answer to one operation

/// The operations [`handle_reply`] can answer, chosen by the first byte.
pub const HANDLE_OPS: [&str; 10] = [
    "info",
    "services",
    "service",
    "destinations",
    "timeouts",
    "daemons",
    "add_service",
    "add_destination",
    "flush",
    "zero",
];

/// The sequence number of the first operation of a handle (the family
/// lookup is 1).
pub const FIRST_OP_SEQ: u32 = 2;

/// At most this many datagrams are queued (the socket's buffer must hold
/// them all before the handle reads).
const MAX_DATAGRAMS: usize = 64;

/// A handle over a socket pair whose kernel end has already queued the
/// family reply and then `datagrams`, and has shut down its sending side
/// (so the handle meets end-of-file instead of waiting for more). The
/// first byte of `data` picks the operation from [`HANDLE_OPS`]; the rest
/// is datagrams, each a little-endian `u16` length and that many bytes.
pub fn handle_reply(data: &[u8]) {
    let Some((&op, mut rest)) = data.split_first() else {
        return;
    };
    let Ok((user, kernel)) = socketpair(
        SockFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    ) else {
        return;
    };
    let queue = |bytes: &[u8]| {
        send(
            kernel.as_raw_fd(),
            bytes,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        )
        .is_ok()
    };
    if !queue(&ctrl_family_reply(1, PORT_ID, FAMILY_ID)) {
        return;
    }
    let mut count = 0;
    while rest.len() >= 2 && count < MAX_DATAGRAMS {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        if !queue(&rest[2..2 + len]) {
            break;
        }
        rest = &rest[2 + len..];
        count += 1;
    }
    if shutdown(kernel.as_raw_fd(), Shutdown::Write).is_err() {
        return;
    }
    let Ok(mut handle) = Handle::from_socket(user, PORT_ID, Duration::from_secs(5)) else {
        return;
    };
    let vip = ServiceId::tcp(SocketAddr::from(([10, 97, 97, 97], 80)));
    let dest = Destination::new(SocketAddr::from(([10, 244, 1, 39], 80)));
    // Every outcome is a value: the point is that none panics or hangs.
    let _ = match usize::from(op) % HANDLE_OPS.len() {
        0 => handle.info().map(drop),
        1 => handle.services().map(drop),
        2 => handle.service(&vip).map(drop),
        3 => handle.destinations(&vip).map(drop),
        4 => handle.timeouts().map(drop),
        5 => handle.daemons().map(drop),
        6 => handle.add_service(&Service::new(vip, "rr")),
        7 => handle.add_destination(&vip, &dest),
        8 => handle.flush(),
        _ => handle.zero(None),
    };
    drop(kernel);
}

// ---------------------------------------------------------------------------
// argv and restore: ipvsadm-rs against a kernel that says yes

/// A sample of what the agreeable kernel lists: a loopback service (its
/// name resolves from /etc/hosts, never through DNS) with one destination.
fn sample_service() -> Service {
    let mut svc = Service::new(ServiceId::tcp(SocketAddr::from(([127, 0, 0, 1], 80))), "rr");
    svc.stats = Some(Stats::default());
    svc
}

fn sample_dest() -> Destination {
    Destination::new(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080))
}

/// The script of a kernel that accepts everything: dumps list
/// [`sample_service`] and [`sample_dest`], `GET_INFO` and `GET_CONFIG`
/// answer, every write is acknowledged.
fn agreeable(req: &Request) -> Vec<Action> {
    let (seq, port) = (req.seq, req.port);
    let Some(cmd) = req.cmd() else {
        return vec![Action::Send(req.error(libc::EINVAL))];
    };
    let dump = req.flags & NLM_F_DUMP == NLM_F_DUMP;
    let reply = |attrs: Vec<IpvsAttr>| ipvs_message(0, seq, port, &IpvsMessage::new(cmd, attrs));
    let datagram = match cmd {
        IpvsCmd::GetService if dump => crate::datagram([
            crate::service_part(seq, port, &sample_service()),
            done(seq, port),
        ]),
        IpvsCmd::GetService => crate::service_reply(seq, port, &sample_service()),
        IpvsCmd::GetDest if dump => {
            crate::datagram([dest_part(seq, port, &sample_dest()), done(seq, port)])
        }
        _ if dump => done(seq, port),
        IpvsCmd::GetInfo => reply(vec![
            IpvsAttr::Info(InfoAttr::Version(0x010201)),
            IpvsAttr::Info(InfoAttr::ConnTableSize(4096)),
        ]),
        IpvsCmd::GetConfig => reply(vec![
            IpvsAttr::TimeoutTcp(900),
            IpvsAttr::TimeoutTcpFin(120),
            IpvsAttr::TimeoutUdp(300),
        ]),
        _ if req.flags & NLM_F_ACK != 0 => ack(seq, port),
        _ => req.error(libc::EOPNOTSUPP),
    };
    vec![Action::Send(datagram)]
}

/// Runs `ipvsadm <args>` (with `input` on stdin) against `agreeable`;
/// its stdout and stderr. The fake kernel checks that every request the
/// command sent parses (its panic is re-raised here).
pub fn run_ipvsadm(args: &[String], input: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (fd, kernel) = FakeKernel::start(crate::with_family(agreeable));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    if let Ok(mut handle) = Handle::from_socket(fd, PORT_ID, Duration::from_secs(5)) {
        (_, out, err) = process(&mut handle, args, input);
    }
    kernel.join();
    (out, err)
}

/// Runs `ipvsadm <args>` (with `input` on stdin) on `handle`: how it
/// ended, its stdout and its stderr.
pub fn process(handle: &mut Handle, args: &[String], input: &[u8]) -> (Flow, Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input = input;
    let mut io = Out {
        input: &mut input,
        out: &mut out,
        err: &mut err,
        json: false,
    };
    let flow = commands::process(handle, "ipvsadm", args, false, &mut io);
    (flow, out, err)
}

/// An argument vector (words separated by NUL bytes, read as argv is:
/// lossy UTF-8) run as `ipvsadm` would run it.
pub fn argv(data: &[u8]) {
    let words: Vec<String> = data
        .split(|b| *b == 0)
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    // `-R` reads the rules from an empty stdin.
    run_ipvsadm(&words, b"");
}

/// Any bytes as the rules of `ipvsadm -R`: the line reader, the tokenizer
/// and the parser of every line, each line run against the kernel.
pub fn restore(data: &[u8]) {
    let (_, err) = run_ipvsadm(&["-R".to_owned()], data);
    let _ = err;
    // The tokenizer on its own: no word holds a NUL (a NUL ends its C
    // string) or whitespace, none is the word `ipvsadm`, and a word is
    // empty only where its token began with a NUL, as in 1.31.
    for line in data.split(|b| *b == b'\n') {
        for word in commands::restore::restore_tokens(line) {
            assert!(!word.contains('\0'), "NUL kept in {word:?}");
            assert!(
                !word.is_empty() || line.contains(&0),
                "empty word from {line:?}"
            );
            assert!(word != "ipvsadm", "`ipvsadm` kept in {line:?}");
            assert!(
                !word.contains([' ', '\t', '\r', '\n']),
                "whitespace in {word:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// conn_line: /proc/net/ip_vs_conn rows

/// Any bytes as the rows of /proc/net/ip_vs_conn (the first byte picks
/// the format): every non-blank row prints as one line.
pub fn conn_line(data: &[u8]) {
    let Some((&f, rest)) = data.split_first() else {
        return;
    };
    let format = if f & 1 == 1 {
        fmt::NUMERIC | fmt::PERSISTENTCONN
    } else {
        fmt::NUMERIC
    };
    let text = String::from_utf8_lossy(rest);
    for line in text.lines() {
        match ipvsadm_rs::commands::conn::row(line, format, &Numeric) {
            Some(row) => {
                assert!(row.ends_with('\n'), "row without a newline: {row:?}");
                assert_eq!(
                    row.matches('\n').count(),
                    1,
                    "row of several lines: {row:?}"
                );
            }
            None => assert!(
                line.split_whitespace().next().is_none(),
                "{line:?} printed nothing"
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// k8s_json: a Kubernetes dump as `--from-k8s` reads it

/// Any bytes as the dump `--from-k8s` reads (`kubectl get
/// services,endpointslices -A -o json`): read into API objects, mapped to
/// the desired table for a fixed node, and planned against an empty table
/// and against itself. Errors are fine; what maps must be a table the
/// planner and the rules format can take.
#[cfg(feature = "k8s")]
pub fn k8s_json(data: &[u8]) {
    use ipvs_k8s::{mapping, sync};
    use ipvs_plan::VirtualServer;
    use std::collections::HashSet;

    // The tool reads the dump as UTF-8 text and refuses anything else.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(objects) = mapping::read_objects(text) else {
        return;
    };
    let node = mapping::Node {
        ips: vec![
            IpAddr::V4(Ipv4Addr::new(192, 168, 0, 10)),
            IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x10)),
        ],
        name: Some("node-a".to_owned()),
        zone: Some("zone-a".to_owned()),
        scheduler: "rr".to_owned(),
    };
    let mapped = mapping::map(&objects, &node);
    // The packet path of the same model: planned whole and as a diff
    // from nothing, never a panic; every bound address is a VIP element.
    let options = ipvs_k8s::packet::Options::default();
    let elements =
        ipvs_k8s::packet::elements(&mapped.ports, &mapped.node_ips, &options, |_, _, _| false);
    let whole = ipvs_k8s::packet::transaction(None, &elements, &options);
    let diff = ipvs_k8s::packet::transaction(
        Some(&ipvs_k8s::packet::Elements::default()),
        &elements,
        &options,
    );
    assert_eq!(whole.added, elements.len());
    assert_eq!((diff.added, diff.deleted), (elements.len(), 0));
    for d in mapped.desired.iter().filter(|d| d.bound) {
        if let ipvs_netlink::ServiceId::Inet { addr, .. } = d.server.service.id {
            let set = if addr.is_ipv4() { "vips-v4" } else { "vips-v6" };
            assert!(elements.keys(set).contains(&addr.to_string()), "{addr}");
        }
    }
    let desired: Vec<VirtualServer> = mapped.servers();
    let mut ids = HashSet::new();
    let mut dest_count = 0;
    for vs in &desired {
        let svc = &vs.service;
        assert!(ids.insert(svc.id), "{} mapped twice", svc.id);
        assert_eq!(svc.scheduler, "rr", "{}", svc.id);
        let family = svc.id.family();
        let mut addrs = HashSet::new();
        for d in &vs.dests {
            assert_eq!(
                AddressFamily::of(&d.socket_addr().ip()),
                family,
                "{}: real server of another family",
                svc.id
            );
            assert!(
                addrs.insert(d.socket_addr()),
                "{}: {} twice",
                svc.id,
                d.socket_addr()
            );
        }
        dest_count += vs.dests.len();
    }
    // Into an empty table: every service and real server is added, and
    // every write prints as one rules line.
    let fresh = sync::plan_sync(&desired, &[], &Default::default())
        .unwrap_or_else(|e| panic!("the mapping gave a table the planner refuses: {e}"));
    assert!(fresh.plan.conflicts.is_empty());
    let adds =
        |kind: fn(&ipvs_netlink::Op) -> bool| fresh.plan.ops.iter().filter(|op| kind(op)).count();
    assert_eq!(
        adds(|op| matches!(op, ipvs_netlink::Op::AddService(_))),
        desired.len()
    );
    assert_eq!(
        adds(|op| matches!(op, ipvs_netlink::Op::AddDestination(..))),
        dest_count
    );
    assert_eq!(fresh.plan.ops.len(), desired.len() + dest_count);
    for op in &fresh.plan.ops {
        let line = ipvsadm_compat::rules::op_line(op);
        assert!(!line.trim_end_matches('\n').contains('\n'), "{line:?}");
    }
    // Against itself, owned (as created): nothing to do.
    let created: ipvs_k8s::ownership::Records = desired
        .iter()
        .map(|v| {
            let written = ipvs_k8s::ownership::settings(&v.service);
            (v.service.id, ipvs_k8s::ownership::Recorded::one(written))
        })
        .collect();
    assert_eq!(created.len(), ids.len());
    let same = sync::plan_sync(&desired, &desired, &created)
        .unwrap_or_else(|e| panic!("the mapping gave a table the planner refuses: {e}"));
    assert!(same.plan.ops.is_empty(), "{:?}", same.plan.ops);
    assert!(same.plan.conflicts.is_empty());
    // Against itself, not owned: every service is a conflict, nothing is written.
    let foreign = sync::plan_sync(&desired, &desired, &Default::default())
        .unwrap_or_else(|e| panic!("the mapping gave a table the planner refuses: {e}"));
    assert!(foreign.plan.ops.is_empty(), "{:?}", foreign.plan.ops);
    assert_eq!(foreign.plan.conflicts.len(), desired.len());
}

/// Set in the copy of a test binary that [`offline`] starts in a user and
/// network namespace of its own: the test runs there directly.
const OFFLINE_CHILD: &str = "IPVS_TESTS_OFFLINE_CHILD";

/// How [`offline`] ran its function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offline {
    /// In a new, empty network namespace: on a thread of this process (as
    /// root), or in a copy of this test binary started in a new user
    /// namespace (as any user, where the kernel allows it).
    Ran,
    /// Not at all: no network namespace could be made, for the reason
    /// given (also written to stderr, where `cargo test` shows it).
    Skipped(String),
}

/// Runs `f`, the body of the test called `test` (its full libtest name),
/// in a new, empty network namespace, so that a host name the fuzzer made
/// up is never looked up on the network.
///
/// As root (`CAP_SYS_ADMIN`, as CI runs) `f` runs on a thread that
/// unshares its network namespace; a failure there panics, so CI never
/// skips. As another user the test binary runs the one test again in a
/// child process made in a new user and network namespace (which needs
/// no privilege where unprivileged user namespaces are allowed); the
/// child's failure is the test's. Only when neither namespace can be made
/// is `f` skipped, saying what and why on stderr.
pub fn offline(test: &str, f: impl FnOnce() + Send + 'static) -> Offline {
    if std::env::var_os(OFFLINE_CHILD).is_some() {
        // The copy started below, already in its own namespaces.
        f();
        return Offline::Ran;
    }
    let thread = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map(|()| f())
    });
    let unshared = match thread.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let Err(errno) = unshared else {
        return Offline::Ran;
    };
    assert!(
        !nix::unistd::geteuid().is_root(),
        "{test}: root, yet no network namespace ({errno}): refusing to skip"
    );
    match in_user_namespace(test) {
        Ok(()) => Offline::Ran,
        Err(why) => {
            let line = format!(
                "SKIPPED {test}: not run, no network namespace to run it offline \
                 (unshare(CLONE_NEWNET): {errno}, not root; {why}); run it as root\n"
            );
            // Straight to the file descriptor: libtest captures eprintln!
            // of a passing test, and this must be seen.
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            Offline::Skipped(line.trim_end().to_owned())
        }
    }
}

/// Runs the test `test` of this binary again, alone, in a child process
/// made in a new user and network namespace; `Err` says why no such child
/// could start. Panics with the child's output if the test failed there.
fn in_user_namespace(test: &str) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| format!("no test binary path: {e}"))?;
    let mut child = std::process::Command::new(exe);
    child
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(OFFLINE_CHILD, "1");
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: unshare(2) is a plain
    // system call and last_os_error only reads errno. The forked child
    // has one thread, as CLONE_NEWUSER requires.
    unsafe {
        child.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let out = child
        .output()
        .map_err(|e| format!("unshare(CLONE_NEWUSER | CLONE_NEWNET): {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test}, run in a user and network namespace: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
