//! The address step alone (issue 32): binding n virtual addresses to the
//! dummy interface, as addresses (kube-proxy's way, the default) and as
//! local routes (`--local-routes`), through the same code the live mode
//! uses (`ipvs_k8s::node::Dummy`), in a network namespace of its own.
//! For each way: the first bind of n, a no-op bind, one address added on
//! top of n, and the removal of all n. Prints a table for
//! `vm-tests/bench.sh`; no timed assertion, but each step's result is
//! checked against iproute2's listing.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ipvs_k8s::node::{Binding, Dummy};
use vm_tests::lab::Netns;

/// `n` addresses from 10.96.0.1 on.
fn addresses(n: u32) -> BTreeSet<IpAddr> {
    (0..n)
        .map(|i| IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 1)) + i)))
        .collect()
}

/// How many of the interface's addresses, and of our local routes,
/// iproute2 lists.
fn listed(ns: &Netns) -> (usize, usize) {
    let count = |cmd: &str| {
        let out = vm_tests::sh(&format!("nsenter --net={} sh -c '{cmd}'", ns.path()));
        out.trim().parse::<usize>().unwrap()
    };
    (
        count("/sbin/ip -o -4 addr show dev bench0 | wc -l"),
        count("/sbin/ip route show table local | grep -c \" proto 118\" || true"),
    )
}

struct Row {
    n: u32,
    binding: Binding,
    first: Duration,
    noop: Duration,
    one_more: Duration,
    remove: Duration,
}

fn measure(n: u32, binding: Binding) -> Row {
    let ns = Netns::new().unwrap();
    let wanted = addresses(n);
    let mut more = wanted.clone();
    more.insert(IpAddr::V4(Ipv4Addr::new(10, 97, 0, 1)));
    let (first, noop, one_more, remove, counts) = ns.run(move || {
        let mut dummy = Dummy::ensure("bench0").unwrap().with_binding(binding);
        let timed = |dummy: &mut Dummy, want: &BTreeSet<IpAddr>| {
            let t = Instant::now();
            let changes = dummy.bind(want).unwrap();
            assert!(changes.errors.is_empty(), "{:?}", changes.errors);
            (t.elapsed(), changes.added.len() + changes.removed.len())
        };
        let first = timed(&mut dummy, &wanted);
        let noop = timed(&mut dummy, &wanted);
        let one_more = timed(&mut dummy, &more);
        let remove = timed(&mut dummy, &BTreeSet::new());
        let counts = [first.1, noop.1, one_more.1, remove.1];
        (first.0, noop.0, one_more.0, remove.0, counts)
    });
    let n_changed = n as usize;
    assert_eq!(counts, [n_changed, 0, 1, n_changed + 1], "changes per step");
    assert_eq!(listed(&ns), (0, 0), "nothing left after the removal");
    Row {
        n,
        binding,
        first,
        noop,
        one_more,
        remove,
    }
}

/// Checks that a bind of `n` leaves exactly what iproute2 lists.
fn check_listing(n: u32, binding: Binding) {
    let ns = Netns::new().unwrap();
    ns.run(move || {
        let mut dummy = Dummy::ensure("bench0").unwrap().with_binding(binding);
        dummy.bind(&addresses(n)).unwrap();
    });
    let want = match binding {
        Binding::Addresses => (n as usize, 0),
        Binding::LocalRoutes => (0, n as usize),
    };
    assert_eq!(listed(&ns), want, "{binding:?}");
}

fn report(sizes: &[u32]) {
    let mut rows = Vec::new();
    for &n in sizes {
        for binding in [Binding::Addresses, Binding::LocalRoutes] {
            check_listing(n.min(100), binding);
            rows.push(measure(n, binding));
        }
    }
    let s = |d: Duration| d.as_secs_f64();
    println!("BENCH-TABLE-BEGIN");
    println!("| addresses bound | as | first bind (s) | no-op bind (s) | one more (s) | remove all (s) | first bind / routes' |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for pair in rows.chunks(2) {
        let routes = s(pair[1].first);
        for r in pair {
            println!(
                "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2}x |",
                r.n,
                match r.binding {
                    Binding::Addresses => "addresses (default)",
                    Binding::LocalRoutes => "local routes (`--local-routes`)",
                },
                s(r.first),
                s(r.noop),
                s(r.one_more),
                s(r.remove),
                s(r.first) / routes,
            );
        }
    }
    println!("BENCH-TABLE-END");
}

#[test]
#[ignore = "run by vm-tests/bench.sh"]
fn bench_addresses_smoke() {
    report(&[1_000, 3_000]);
}

#[test]
#[ignore = "run by vm-tests/bench.sh"]
fn bench_addresses_full() {
    report(&[1_000, 10_000, 30_000]);
}
