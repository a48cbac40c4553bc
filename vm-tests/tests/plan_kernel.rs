//! The planner's properties against the real kernel: for random small
//! tables (proptest, a few dozen cases), in a fresh network namespace per
//! case, with services another tool (the real ipvsadm) put there and a
//! table of our own already written, `Planner` plans the wanted table for
//! the part it owns, `Handle::apply` writes the plan (every op
//! succeeds), and then
//! - the kernel's table, read back, is the wanted table for the owned
//!   part (`==` on the specs: the kernel's `hashed` and tunnel defaults
//!   are no difference);
//! - a second plan against the kernel's table is empty;
//! - the services another tool put there are untouched: the real
//!   ipvsadm lists them (`-Sn`) as it did before, and a wanted service
//!   with one of their identities is a conflict, not a write.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use ipvs_netlink::{ForwardMethod, Handle, Op, ServiceId};
use ipvs_plan::{
    current_table, DestinationSpec, Planner, Removal, ServiceSpec, VirtualServer, VirtualServerSpec,
};
use proptest::prelude::*;
use vm_tests::{enter_fresh_netns, ipvsadm, run_as, sa};

/// What another tool put in the kernel: services the planner does not
/// own (outside 10.0.0.0/24, fd00::/64 and marks below 100).
const OTHERS: &str = "\
-A -t 10.9.0.1:80 -s wlc
-a -t 10.9.0.1:80 -r 10.9.1.1:80 -m -w 3
-A -f 100 -s rr
-a -f 100 -r 10.9.1.2:0 -g -w 1
";

/// The services the planner owns.
fn owned(id: &ServiceId) -> bool {
    match *id {
        ServiceId::Inet {
            addr: IpAddr::V4(a),
            ..
        } => a.octets()[..3] == [10, 0, 0],
        ServiceId::Inet {
            addr: IpAddr::V6(a),
            ..
        } => a.segments()[..4] == [0xfd00, 0, 0, 0],
        ServiceId::Fwmark { mark, .. } => mark < 100,
    }
}

/// The identities a case draws from: the owned ones, and one of
/// another tool's (a conflict when wanted).
fn ids() -> Vec<ServiceId> {
    vec![
        ServiceId::tcp(sa("10.0.0.1:80")),
        ServiceId::tcp(sa("10.0.0.2:80")),
        ServiceId::udp(sa("10.0.0.1:53")),
        ServiceId::tcp(sa("[fd00::1]:443")),
        ServiceId::fwmark(ipvs_netlink::AddressFamily::Inet, 1),
    ]
}

/// A real server of `id`: masquerading to port 8080, or routed or
/// tunnelled to the service's port (ipvsadm's rule for those).
fn dest(id: ServiceId) -> impl Strategy<Value = DestinationSpec> {
    let v6 = id.family() == ipvs_netlink::AddressFamily::Inet6;
    let port = match id {
        ServiceId::Inet { port, .. } => port,
        ServiceId::Fwmark { .. } => 0,
    };
    (
        1u8..=4,
        prop::sample::select(vec![
            ForwardMethod::Masquerade,
            ForwardMethod::DirectRoute,
            ForwardMethod::Tunnel,
        ]),
        0u32..=5,
        any::<bool>(),
    )
        .prop_map(move |(host, forward, weight, thresholds)| {
            let addr: IpAddr = if v6 {
                format!("fd00:1::{host}").parse().expect("an IPv6 address")
            } else {
                format!("10.1.0.{host}").parse().expect("an IPv4 address")
            };
            let port = if forward == ForwardMethod::Masquerade {
                8080
            } else {
                port
            };
            let d = DestinationSpec::new(SocketAddr::new(addr, port))
                .forward(forward)
                .weight(weight);
            if thresholds {
                d.thresholds(100, 10)
            } else {
                d
            }
        })
}

/// A virtual service of `id` with up to three real servers (distinct
/// addresses).
fn server(id: ServiceId) -> impl Strategy<Value = VirtualServerSpec> {
    (
        prop::sample::select(vec!["rr", "wlc", "sh"]),
        prop::option::of(prop::sample::select(vec![60u32, 300])),
        prop::collection::vec(dest(id), 0..4),
    )
        .prop_map(move |(scheduler, persistent, dests)| {
            let mut service = ServiceSpec::new(id, scheduler);
            if let Some(timeout) = persistent {
                service = service.persistent(timeout);
            }
            let mut by_addr = BTreeMap::new();
            for d in dests {
                by_addr.entry(d.addr).or_insert(d);
            }
            VirtualServerSpec {
                service,
                dests: by_addr.into_values().collect(),
            }
        })
}

/// An owned table: a subset of the owned identities, each with its
/// settings.
fn owned_table() -> impl Strategy<Value = Vec<VirtualServerSpec>> {
    prop::sample::subsequence(ids(), 0..=ids().len()).prop_flat_map(|ids| {
        ids.into_iter()
            .map(|id| server(id).boxed())
            .collect::<Vec<_>>()
    })
}

/// The owned part of a table, as specs, in a canonical order.
fn owned_part(table: &[VirtualServer]) -> BTreeMap<String, VirtualServerSpec> {
    table
        .iter()
        .filter(|v| owned(&v.service.id))
        .map(|v| {
            (
                v.service.id.to_string(),
                canonical(VirtualServerSpec::from(v)),
            )
        })
        .collect()
}

fn canonical(mut v: VirtualServerSpec) -> VirtualServerSpec {
    v.dests.sort_by_key(|d| d.addr);
    v
}

fn ipvsadm_run(args: &[&str], stdin: &str) -> String {
    let out = run_as(&ipvsadm(), "ipvsadm", args, stdin.as_bytes());
    assert_eq!(out.code, Some(0), "ipvsadm {args:?}:\n{out}");
    String::from_utf8(out.stdout).expect("ipvsadm prints text")
}

/// The lines of `ipvsadm -Sn` that are another tool's services'.
fn others_listed() -> Vec<String> {
    let mut lines: Vec<String> = ipvsadm_run(&["-Sn"], "")
        .lines()
        .filter(|l| l.contains("10.9.") || l.contains("-f 100"))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

fn check(
    before: Vec<VirtualServerSpec>,
    wanted: Vec<VirtualServerSpec>,
    drain: bool,
    conflict: bool,
) {
    enter_fresh_netns().expect("a fresh network namespace");
    ipvsadm_run(&["-R"], OTHERS);
    let others = others_listed();
    assert_eq!(others.len(), 4, "{others:?}");
    let mut h = Handle::new().expect("IPVS in the VM");
    // Our own table before: written through the handle.
    let mut ops = Vec::new();
    for v in &before {
        let v = VirtualServer::from(v);
        ops.push(Op::AddService(v.service.clone()));
        ops.extend(
            v.dests
                .into_iter()
                .map(|d| Op::AddDestination(v.service.id, d)),
        );
    }
    for (op, r) in ops.iter().zip(h.apply(&ops).expect("the batch is sent")) {
        assert!(r.is_ok(), "writing the table before: {op:?}: {r:?}");
    }

    let mut desired = wanted.clone();
    let theirs = ServiceId::tcp(sa("10.9.0.1:80"));
    if conflict {
        desired.push(VirtualServerSpec::new(ServiceSpec::new(theirs, "rr")));
    }
    let planner = Planner::new().owning(owned).removal(if drain {
        Removal::Drain
    } else {
        Removal::Delete
    });
    let current = current_table(&mut h).expect("the kernel's table");
    let plan = planner.plan(&desired, &current).expect("no duplicates");
    let want_conflicts = if conflict { vec![theirs] } else { vec![] };
    assert_eq!(plan.conflicts, want_conflicts);
    let results = h.apply(&plan.ops).expect("the plan is sent");
    for (op, r) in plan.ops.iter().zip(&results) {
        assert!(r.is_ok(), "{op:?}: {r:?}\nplan: {:?}", plan.ops);
    }

    let after = current_table(&mut h).expect("the kernel's table");
    let want: BTreeMap<String, VirtualServerSpec> = wanted
        .iter()
        .map(|v| (v.service.id.to_string(), canonical(v.clone())))
        .collect();
    assert_eq!(owned_part(&after), want, "plan: {:?}", plan.ops);
    let again = planner.plan(&desired, &after).expect("no duplicates");
    assert!(again.ops.is_empty(), "a second plan: {:?}", again.ops);
    assert_eq!(again.conflicts, want_conflicts);
    assert!(again.draining.is_empty(), "{:?}", again.draining);
    assert_eq!(others_listed(), others, "another tool's services");
}

proptest! {
    // A smoke size: the VM suite's budget is tight (each case is a
    // namespace, two ipvsadm runs and a few batches).
    #![proptest_config(ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    #[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
    fn a_plan_applied_to_the_kernel_gives_the_wanted_table(
        before in owned_table(),
        wanted in owned_table(),
        drain in any::<bool>(),
        conflict in any::<bool>(),
    ) {
        check(before, wanted, drain, conflict);
    }
}
