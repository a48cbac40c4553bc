//! ipvsadm's listing order, reproduced exactly.
//!
//! ipvsadm sorts with glibc's `qsort` and comparators that subtract
//! unsigned values into an `int`: the result is not a total order (an
//! address of 192.168.x.x sorts before 10.x.x.x, because the difference
//! overflows), so the order depends on the sorting algorithm. glibc's
//! `qsort` is a top-down merge sort that takes from the left run while
//! `cmp(left, right) <= 0`; [`glibc_msort`] does the same, so our order
//! equals ipvsadm's for every input. (Rust's own sorts may panic on a
//! comparator that is not a total order; this one never does.)

use std::net::IpAddr;

use ipvs_netlink::{Destination, Service, ServiceId};

/// Sorts `v` as glibc's merge sort does with the comparator `cmp`
/// (negative, zero or positive as C comparators return).
///
/// The merge sort runs on positions, so the elements are neither cloned
/// nor moved until the order is known; then they are moved once. (Merging
/// clones of services cost a `String` allocation per service and level:
/// over a third of the instructions of listing 2,000 services.)
pub fn glibc_msort<T>(v: &mut [T], cmp: &impl Fn(&T, &T) -> i32) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let mut order: Vec<usize> = (0..n).collect();
    let mut scratch = Vec::with_capacity(n);
    msort_positions(&mut order, &mut scratch, &|a: usize, b: usize| {
        cmp(&v[a], &v[b])
    });
    permute(v, &order);
}

/// glibc's top-down merge sort of positions: split at half, sort both
/// halves, merge taking from the left while `cmp(left, right) <= 0`.
fn msort_positions(p: &mut [usize], scratch: &mut Vec<usize>, cmp: &impl Fn(usize, usize) -> i32) {
    let n = p.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    {
        let (b1, b2) = p.split_at_mut(n1);
        msort_positions(b1, scratch, cmp);
        msort_positions(b2, scratch, cmp);
    }
    let (b1, b2) = p.split_at(n1);
    scratch.clear();
    let (mut i, mut j) = (0, 0);
    while i < b1.len() && j < b2.len() {
        if cmp(b1[i], b2[j]) <= 0 {
            scratch.push(b1[i]);
            i += 1;
        } else {
            scratch.push(b2[j]);
            j += 1;
        }
    }
    scratch.extend_from_slice(&b1[i..]);
    scratch.extend_from_slice(&b2[j..]);
    p.copy_from_slice(scratch);
}

/// Rearranges `v` so that its element `k` is the one that was at
/// `order[k]` (`order` is a permutation), by following each cycle once.
fn permute<T>(v: &mut [T], order: &[usize]) {
    let mut placed = vec![false; v.len()];
    for start in 0..v.len() {
        if placed[start] {
            continue;
        }
        let mut at = start;
        loop {
            placed[at] = true;
            let from = order[at];
            if from == start {
                break;
            }
            v.swap(at, from);
            at = from;
        }
    }
}

/// `a - b` of two unsigned 32-bit values as C's `int` sees it.
fn c_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// The four host-order words of an address as libipvs holds it in its
/// `union nf_inet_addr`: an IPv4 address is the first word, zeros follow.
fn words(ip: &IpAddr) -> [u32; 4] {
    match ip {
        IpAddr::V4(v4) => [u32::from(*v4), 0, 0, 0],
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
    }
}

/// Two addresses as libipvs compares them: by the family of the first,
/// one word for IPv4, four for IPv6.
fn addr_diff(a: &IpAddr, b: &IpAddr) -> i32 {
    let (wa, wb) = (words(a), words(b));
    let n = if a.is_ipv6() { 4 } else { 1 };
    wa[..n]
        .iter()
        .zip(&wb[..n])
        .map(|(x, y)| c_diff(*x, *y))
        .find(|r| *r != 0)
        .unwrap_or(0)
}

/// libipvs's `ipvs_cmp_services`.
pub fn cmp_services(a: &Service, b: &Service) -> i32 {
    let key = |s: &Service| -> (u32, u16, u16, Option<(IpAddr, u16)>) {
        match s.id {
            ServiceId::Fwmark { family, mark } => (mark, family.to_raw(), 0, None),
            ServiceId::Inet {
                protocol,
                addr,
                port,
            } => (
                0,
                s.id.family().to_raw(),
                protocol.to_raw(),
                Some((addr, port)),
            ),
        }
    };
    let (fa, afa, pa, ia) = key(a);
    let (fb, afb, pb, ib) = key(b);
    let r = c_diff(fa, fb);
    if r != 0 {
        return r;
    }
    let r = i32::from(afa) - i32::from(afb);
    if r != 0 {
        return r;
    }
    let r = i32::from(pa) - i32::from(pb);
    if r != 0 {
        return r;
    }
    let unspecified = (IpAddr::from([0u8, 0, 0, 0]), 0);
    let (addr_a, port_a) = ia.unwrap_or(unspecified);
    let (addr_b, port_b) = ib.unwrap_or(unspecified);
    let r = addr_diff(&addr_a, &addr_b);
    if r != 0 {
        return r;
    }
    i32::from(port_a) - i32::from(port_b)
}

/// libipvs's `ipvs_cmp_dests`.
pub fn cmp_dests(a: &Destination, b: &Destination) -> i32 {
    let r = addr_diff(&a.addr, &b.addr);
    if r != 0 {
        return r;
    }
    i32::from(a.port) - i32::from(b.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(addr: &str) -> Service {
        Service::new(ServiceId::tcp(addr.parse().unwrap()), "rr")
    }

    #[test]
    fn the_comparator_quirk_puts_192_168_before_10() {
        let mut v = vec![
            svc("10.0.0.1:80"),
            svc("192.168.0.1:80"),
            svc("10.0.0.2:80"),
        ];
        glibc_msort(&mut v, &cmp_services);
        let order: Vec<String> = v.iter().map(|s| s.id.to_string()).collect();
        assert_eq!(
            order,
            ["TCP 192.168.0.1:80", "TCP 10.0.0.1:80", "TCP 10.0.0.2:80"]
        );
    }

    #[test]
    fn ports_break_ties_and_fwmarks_sort_after_inet_services() {
        let mut v = vec![
            Service::new(
                ServiceId::fwmark(ipvs_netlink::AddressFamily::Inet, 3),
                "rr",
            ),
            svc("10.0.0.1:443"),
            svc("10.0.0.1:80"),
        ];
        glibc_msort(&mut v, &cmp_services);
        let order: Vec<String> = v.iter().map(|s| s.id.to_string()).collect();
        assert_eq!(order, ["TCP 10.0.0.1:80", "TCP 10.0.0.1:443", "FWM 3"]);
    }

    #[test]
    fn merge_sort_is_stable_for_equal_keys() {
        let mut v = vec![(1, 'a'), (0, 'b'), (1, 'c'), (0, 'd')];
        glibc_msort(&mut v, &|x: &(i32, char), y: &(i32, char)| x.0 - y.0);
        assert_eq!(v, [(0, 'b'), (0, 'd'), (1, 'a'), (1, 'c')]);
    }

    /// The merge sort as it was written first, on clones: the oracle of
    /// the sort on positions.
    fn msort_on_clones<T: Clone>(v: &mut [T], cmp: &impl Fn(&T, &T) -> i32) {
        let n = v.len();
        if n <= 1 {
            return;
        }
        let (b1, b2) = v.split_at_mut(n / 2);
        msort_on_clones(b1, cmp);
        msort_on_clones(b2, cmp);
        let mut merged = Vec::with_capacity(n);
        let (mut i, mut j) = (0, 0);
        while i < b1.len() && j < b2.len() {
            if cmp(&b1[i], &b2[j]) <= 0 {
                merged.push(b1[i].clone());
                i += 1;
            } else {
                merged.push(b2[j].clone());
                j += 1;
            }
        }
        merged.extend_from_slice(&b1[i..]);
        merged.extend_from_slice(&b2[j..]);
        v.clone_from_slice(&merged);
    }

    proptest::proptest! {
        #[test]
        fn the_sort_on_positions_orders_as_the_merge_of_clones(
            v in proptest::collection::vec((proptest::prelude::any::<u32>(), 0u8..4), 0..300)
        ) {
            // c_diff is not a total order: the order depends on the
            // algorithm's exact comparisons; the tag shows where equal
            // keys went.
            let cmp = |a: &(u32, u8), b: &(u32, u8)| c_diff(a.0, b.0);
            let mut ours = v.clone();
            glibc_msort(&mut ours, &cmp);
            let mut oracle = v.clone();
            msort_on_clones(&mut oracle, &cmp);
            proptest::prop_assert_eq!(ours, oracle);
        }

        #[test]
        fn never_panics_and_keeps_every_element(v in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..200)) {
            let mut sorted = v.clone();
            glibc_msort(&mut sorted, &|a: &u32, b: &u32| c_diff(*a, *b));
            let mut a = v.clone();
            a.sort_unstable();
            let mut b = sorted.clone();
            b.sort_unstable();
            proptest::prop_assert_eq!(a, b);
        }
    }
}
