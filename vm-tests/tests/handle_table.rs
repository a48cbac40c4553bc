//! One table of scripted operations and what each must return, run by
//! both handles against the real kernel: the blocking `Handle` and the
//! async `AsyncHandle` (feature `tokio`), each in a fresh network
//! namespace. After the steps that say so, the real ipvsadm 1.31 reads
//! the table back. The two runs must also give the same transcript.

use std::net::SocketAddr;
use std::pin::pin;

use futures_util::StreamExt;
use ipvs_netlink::{
    AsyncHandle, Daemon, DaemonState, Destination, Error, ForwardMethod, Handle, Info, Op, Service,
    ServiceId, Timeouts,
};
use vm_tests::{enter_fresh_netns, ipvsadm_ok, sa};

/// One call of either handle.
#[derive(Debug, Clone)]
enum Call {
    GetInfo,
    Flush,
    AddService(Service),
    EditService(Service),
    DeleteService(ServiceId),
    GetService(ServiceId),
    Services,
    AddDest(ServiceId, Destination),
    EditDest(ServiceId, Destination),
    DeleteDest(ServiceId, SocketAddr),
    Destinations(ServiceId),
    Zero(Option<ServiceId>),
    GetTimeouts,
    SetTimeouts(Timeouts),
    Daemons,
    StopDaemon(Daemon),
    Apply(Vec<Op>),
}

/// A step: the call, what it must return (rendered by [`render`]), and
/// what `ipvsadm ARGS` must print afterwards.
struct Step {
    call: Call,
    want: &'static str,
    ipvsadm: Option<(&'static [&'static str], &'static str)>,
}

fn web() -> ServiceId {
    ServiceId::tcp(sa("10.97.97.97:80"))
}

fn dns() -> ServiceId {
    ServiceId::udp(sa("[fd00::53]:53"))
}

fn missing() -> ServiceId {
    ServiceId::tcp(sa("10.9.9.9:80"))
}

fn dest(addr: &str) -> Destination {
    Destination::new(sa(addr))
}

fn table() -> Vec<Step> {
    use Call::*;
    let step = |call, want| Step {
        call,
        want,
        ipvsadm: None,
    };
    let checked = |call, want, args, out| Step {
        call,
        want,
        ipvsadm: Some((args, out)),
    };
    vec![
        step(GetInfo, "IPVS 1.2.1, 4096 connections"),
        step(Services, ""),
        checked(
            AddService(Service::new(web(), "rr")),
            "ok",
            &["-Sn"],
            "-A -t 10.97.97.97:80 -s rr\n",
        ),
        step(
            AddService(Service::new(web(), "rr")),
            "add service: the service already exists (EEXIST) [exists]",
        ),
        step(
            AddService(Service::new(missing(), "nosuch")),
            "add service: no such scheduler or persistence engine (no ip_vs_NAME or ip_vs_pe_NAME module) (ENOENT) [no scheduler]",
        ),
        step(AddDest(web(), dest("10.244.1.39:80")), "ok"),
        step(AddDest(web(), dest("10.244.1.40:80").weight(3)), "ok"),
        step(
            AddDest(web(), dest("10.244.1.39:80")),
            "add destination: the destination already exists (EEXIST) [exists]",
        ),
        step(
            AddDest(missing(), dest("10.244.1.39:80")),
            "add destination: no such service (ESRCH) [not found]",
        ),
        checked(
            Apply(vec![
                Op::AddService(Service::new(dns(), "wlc").persistent(300)),
                Op::AddDestination(dns(), dest("[fd00::1:53]:5353").weight(2)),
                Op::AddDestination(web(), dest("10.244.1.40:80")),
                Op::AddDestination(web(), dest("10.244.2.33:80").forward(ForwardMethod::DirectRoute)),
                Op::DeleteService(missing()),
            ]),
            "[ok, ok, add destination: the destination already exists (EEXIST) [exists], ok, delete service: no such service (ESRCH) [not found]]",
            &["-Sn"],
            "-A -t 10.97.97.97:80 -s rr\n\
             -a -t 10.97.97.97:80 -r 10.244.1.39:80 -m -w 1\n\
             -a -t 10.97.97.97:80 -r 10.244.1.40:80 -m -w 3\n\
             -a -t 10.97.97.97:80 -r 10.244.2.33:80 -g -w 1\n\
             -A -u [fd00::53]:53 -s wlc -p 300\n\
             -a -u [fd00::53]:53 -r [fd00::1:53]:5353 -m -w 2\n",
        ),
        step(
            Services,
            "TCP 10.97.97.97:80 rr timeout 0\nUDP [fd00::53]:53 wlc timeout 300",
        ),
        step(GetService(web()), "TCP 10.97.97.97:80 rr timeout 0"),
        step(GetService(missing()), "none"),
        step(
            Destinations(web()),
            "10.244.1.39:80 Masq 1\n10.244.1.40:80 Masq 3\n10.244.2.33:80 Route 1",
        ),
        step(Destinations(missing()), ""),
        checked(
            EditService(Service::new(web(), "wlc").persistent(60)),
            "ok",
            &["-Sn"],
            "-A -t 10.97.97.97:80 -s wlc -p 60\n\
             -a -t 10.97.97.97:80 -r 10.244.1.39:80 -m -w 1\n\
             -a -t 10.97.97.97:80 -r 10.244.1.40:80 -m -w 3\n\
             -a -t 10.97.97.97:80 -r 10.244.2.33:80 -g -w 1\n\
             -A -u [fd00::53]:53 -s wlc -p 300\n\
             -a -u [fd00::53]:53 -r [fd00::1:53]:5353 -m -w 2\n",
        ),
        step(
            EditService(Service::new(missing(), "rr")),
            "edit service: no such service (ESRCH) [not found]",
        ),
        step(
            EditDest(web(), dest("10.244.1.40:80").weight(0).forward(ForwardMethod::Tunnel)),
            "ok",
        ),
        step(
            EditDest(web(), dest("10.244.9.9:80")),
            "edit destination: no such destination (ENOENT) [not found]",
        ),
        checked(
            DeleteDest(web(), sa("10.244.1.39:80")),
            "ok",
            &["-Sn"],
            "-A -t 10.97.97.97:80 -s wlc -p 60\n\
             -a -t 10.97.97.97:80 -r 10.244.1.40:80 -i -w 0 --tun-type ipip\n\
             -a -t 10.97.97.97:80 -r 10.244.2.33:80 -g -w 1\n\
             -A -u [fd00::53]:53 -s wlc -p 300\n\
             -a -u [fd00::53]:53 -r [fd00::1:53]:5353 -m -w 2\n",
        ),
        step(
            DeleteDest(web(), sa("10.244.1.39:80")),
            "delete destination: no such destination (ENOENT) [not found]",
        ),
        step(Zero(Some(web())), "ok"),
        step(Zero(None), "ok"),
        step(
            Zero(Some(missing())),
            "zero counters: no such service (ESRCH) [not found]",
        ),
        checked(
            SetTimeouts(Timeouts::new(900, 120, 300)),
            "ok",
            &["-L", "--timeout"],
            "Timeout (tcp tcpfin udp): 900 120 300\n",
        ),
        step(SetTimeouts(Timeouts::new(0, 60, 0)), "ok"),
        step(GetTimeouts, "900 60 300"),
        step(Daemons, ""),
        step(
            StopDaemon(Daemon::new(DaemonState::Backup, "lo")),
            "stop sync daemon: no sync daemon of that state is running (ESRCH) [not found]",
        ),
        checked(
            DeleteService(dns()),
            "ok",
            &["-Sn"],
            "-A -t 10.97.97.97:80 -s wlc -p 60\n\
             -a -t 10.97.97.97:80 -r 10.244.1.40:80 -i -w 0 --tun-type ipip\n\
             -a -t 10.97.97.97:80 -r 10.244.2.33:80 -g -w 1\n",
        ),
        step(
            DeleteService(dns()),
            "delete service: no such service (ESRCH) [not found]",
        ),
        checked(Flush, "ok", &["-Sn"], ""),
        step(Services, ""),
    ]
}

/// An error as the test compares it: its words, and what it answers.
fn render_error(e: &Error) -> String {
    let mut kinds = Vec::new();
    if e.is_already_exists() {
        kinds.push("exists");
    }
    if e.is_not_found() {
        kinds.push("not found");
    }
    if e.is_no_such_scheduler() {
        kinds.push("no scheduler");
    }
    if e.is_permission() {
        kinds.push("permission");
    }
    format!("{e} [{}]", kinds.join(", "))
}

/// What a call returned, as the table spells it.
enum Got {
    Unit(Result<(), Error>),
    Info(Result<Info, Error>),
    Services(Result<Vec<Service>, Error>),
    Service(Result<Option<Service>, Error>),
    Dests(Result<Vec<Destination>, Error>),
    Timeouts(Result<Timeouts, Error>),
    Daemons(Result<Vec<Daemon>, Error>),
    Batch(Result<Vec<Result<(), Error>>, Error>),
}

fn svc_line(s: &Service) -> String {
    format!("{} {} timeout {}", s.id, s.scheduler, s.timeout)
}

fn render(got: Got) -> String {
    fn or<T>(r: Result<T, Error>, f: impl FnOnce(T) -> String) -> String {
        r.map_or_else(|e| render_error(&e), f)
    }
    let unit = |r: Result<(), Error>| or(r, |()| "ok".into());
    match got {
        Got::Unit(r) => unit(r),
        Got::Info(r) => or(r, |i| {
            let (a, b, c) = i.version_triple();
            format!("IPVS {a}.{b}.{c}, {} connections", i.conn_table_size)
        }),
        Got::Services(r) => or(r, |mut v| {
            v.sort_by_key(|s| s.id.to_string());
            v.iter().map(svc_line).collect::<Vec<_>>().join("\n")
        }),
        Got::Service(r) => or(r, |s| s.as_ref().map_or("none".into(), svc_line)),
        Got::Dests(r) => or(r, |mut v| {
            v.sort_by_key(|d| d.socket_addr());
            v.iter()
                .map(|d| format!("{} {} {}", d.socket_addr(), d.forward, d.weight))
                .collect::<Vec<_>>()
                .join("\n")
        }),
        Got::Timeouts(r) => or(r, |t| format!("{} {} {}", t.tcp, t.tcp_fin, t.udp)),
        Got::Daemons(r) => or(r, |v| {
            v.iter()
                .map(|d| format!("{:?} {} {}", d.state, d.interface, d.sync_id))
                .collect::<Vec<_>>()
                .join("\n")
        }),
        Got::Batch(r) => or(r, |v| {
            let each: Vec<String> = v.into_iter().map(unit).collect();
            format!("[{}]", each.join(", "))
        }),
    }
}

fn blocking(h: &mut Handle, call: &Call) -> Got {
    use Call::*;
    match call {
        GetInfo => Got::Info(h.info()),
        Flush => Got::Unit(h.flush()),
        AddService(s) => Got::Unit(h.add_service(s)),
        EditService(s) => Got::Unit(h.edit_service(s)),
        DeleteService(id) => Got::Unit(h.delete_service(id)),
        GetService(id) => Got::Service(h.service(id)),
        Services => Got::Services(h.services()),
        AddDest(id, d) => Got::Unit(h.add_destination(id, d)),
        EditDest(id, d) => Got::Unit(h.edit_destination(id, d)),
        DeleteDest(id, a) => Got::Unit(h.delete_destination(id, *a)),
        Destinations(id) => Got::Dests(h.destinations(id)),
        Zero(id) => Got::Unit(h.zero(id.as_ref())),
        GetTimeouts => Got::Timeouts(h.timeouts()),
        SetTimeouts(t) => Got::Unit(h.set_timeouts(t)),
        Daemons => Got::Daemons(h.daemons()),
        StopDaemon(d) => Got::Unit(h.stop_daemon(d)),
        Apply(ops) => Got::Batch(h.apply(ops)),
    }
}

async fn nonblocking(h: &AsyncHandle, call: &Call) -> Got {
    use Call::*;
    match call {
        GetInfo => Got::Info(h.info().await),
        Flush => Got::Unit(h.flush().await),
        AddService(s) => Got::Unit(h.add_service(s).await),
        EditService(s) => Got::Unit(h.edit_service(s).await),
        DeleteService(id) => Got::Unit(h.delete_service(id).await),
        GetService(id) => Got::Service(h.service(id).await),
        Services => Got::Services(h.services().await),
        AddDest(id, d) => Got::Unit(h.add_destination(id, d).await),
        EditDest(id, d) => Got::Unit(h.edit_destination(id, d).await),
        DeleteDest(id, a) => Got::Unit(h.delete_destination(id, *a).await),
        Destinations(id) => Got::Dests(h.destinations(id).await),
        Zero(id) => Got::Unit(h.zero(id.as_ref()).await),
        GetTimeouts => Got::Timeouts(h.timeouts().await),
        SetTimeouts(t) => Got::Unit(h.set_timeouts(t).await),
        Daemons => Got::Daemons(h.daemons().await),
        StopDaemon(d) => Got::Unit(h.stop_daemon(d).await),
        Apply(ops) => Got::Batch(h.apply(ops).await),
    }
}

/// Runs the table, checking each step; the transcript.
fn run_table(mut call: impl FnMut(&Call) -> String, which: &str) -> Vec<String> {
    let mut transcript = Vec::new();
    for (i, step) in table().into_iter().enumerate() {
        let got = call(&step.call);
        assert_eq!(got, step.want, "{which}, step {i}: {:?}", step.call);
        if let Some((args, out)) = step.ipvsadm {
            assert_eq!(ipvsadm_ok(args), out, "{which}, step {i}: ipvsadm {args:?}");
        }
        transcript.push(got);
    }
    transcript
}

fn runtime() -> tokio::runtime::Runtime {
    // On this thread, so that the sockets open in its namespace.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn blocking_transcript() -> Vec<String> {
    let mut h = vm_tests::fresh_handle();
    run_table(|c| render(blocking(&mut h, c)), "blocking")
}

fn async_transcript() -> Vec<String> {
    enter_fresh_netns().expect("a fresh network namespace");
    let rt = runtime();
    let h = rt.block_on(AsyncHandle::new()).expect("IPVS in the VM");
    run_table(|c| render(rt.block_on(nonblocking(&h, c))), "async")
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn the_blocking_handle_runs_the_table() {
    blocking_transcript();
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn the_async_handle_runs_the_table() {
    async_transcript();
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn both_handles_give_the_same_transcript() {
    // Each on a thread of its own, each thread in a namespace of its own.
    let a = std::thread::spawn(async_transcript);
    let b = std::thread::spawn(blocking_transcript);
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert_eq!(a, b);
}

/// A dump the kernel sends in many datagrams, its stream dropped after
/// the first service: the kernel refuses another dump on the socket
/// (EBUSY) until the first is read to its end, which the handle does
/// before its next request.
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_dump_dropped_early_does_not_block_the_next() {
    enter_fresh_netns().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let h = AsyncHandle::new().await.unwrap();
        let mut ops = Vec::new();
        for i in 0..2000u32 {
            let addr = format!("10.{}.{}.{}:80", 100 + i / 65536, (i / 256) % 256, i % 256);
            ops.push(Op::AddService(Service::new(
                ServiceId::tcp(sa(&addr)),
                "rr",
            )));
        }
        assert!(h.apply(&ops).await.unwrap().iter().all(Result::is_ok));
        for _ in 0..3 {
            let mut s = pin!(h.service_stream());
            assert!(s.next().await.unwrap().is_ok());
        }
        // A destination dump on the other socket meanwhile, then the
        // service dump again.
        assert_eq!(h.destinations(&ops_id(&ops[0])).await.unwrap(), vec![]);
        assert_eq!(h.services().await.unwrap().len(), 2000);
        // Many tasks at once on the one handle.
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let h = h.clone();
                tokio::spawn(async move { h.services().await.map(|v| v.len()) })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 2000);
        }
    });
    assert_eq!(ipvsadm_ok(&["-Sn"]).lines().count(), 2000);
}

fn ops_id(op: &Op) -> ServiceId {
    match op {
        Op::AddService(s) => s.id,
        _ => unreachable!("the test adds services"),
    }
}
