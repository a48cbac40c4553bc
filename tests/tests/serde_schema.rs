//! The feature `serde` of ipvs-netlink and ipvs-plan against the tool's
//! JSON (which `ipvsadm-rs -Ln --json` writes through it; its golden
//! documents are in ipvsadm-rs's `format::json` tests): a listing reads
//! back through `--apply`'s reader as its settings, a desired table serialized reads back through
//! the reader of `ipvsadm-rs --apply` (`format::json::read_table`) as the
//! same table, and the model reads back as itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipvs_netlink::{
    AddressFamily, Destination, ForwardMethod, Netmask, Protocol, Service, ServiceFlags, ServiceId,
    Stats, TunnelFlags, TunnelType,
};
use ipvs_plan::{DestinationSpec, ServiceSpec, VirtualServer, VirtualServerSpec};
use ipvsadm_rs::format::json::{read_table, table as table_doc, ReadService};
use proptest::prelude::*;

fn stats() -> impl Strategy<Value = Option<Stats>> {
    prop::option::of(prop::array::uniform10(any::<u64>()).prop_map(|v| {
        let mut s = Stats::default();
        s.conns = v[0];
        s.in_pkts = v[1];
        s.out_pkts = v[2];
        s.in_bytes = v[3];
        s.out_bytes = v[4];
        s.cps = v[5];
        s.in_pps = v[6];
        s.out_pps = v[7];
        s.in_bps = v[8];
        s.out_bps = v[9];
        s
    }))
}

fn ip(v6: bool) -> impl Strategy<Value = IpAddr> {
    any::<u128>().prop_map(move |n| {
        if v6 {
            IpAddr::V6(Ipv6Addr::from(n))
        } else {
            IpAddr::V4(Ipv4Addr::from(n as u32))
        }
    })
}

fn service() -> impl Strategy<Value = Service> {
    (any::<bool>(), any::<bool>()).prop_flat_map(|(v6, fwm)| {
        let family = if v6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        let id = if fwm {
            (1u32..)
                .prop_map(move |m| ServiceId::fwmark(family, m))
                .boxed()
        } else {
            (
                prop::sample::select(vec![Protocol::Tcp, Protocol::Udp, Protocol::Sctp]),
                ip(v6),
                any::<u16>(),
            )
                .prop_map(|(p, a, port)| ServiceId::inet(p, SocketAddr::new(a, port)))
                .boxed()
        };
        let netmask = if v6 {
            (1u32..=128).prop_map(Netmask::V6).boxed()
        } else {
            any::<u32>()
                .prop_map(|m| Netmask::V4(Ipv4Addr::from(m)))
                .boxed()
        };
        (
            id,
            prop::sample::select(vec!["rr", "wlc", "sh", "mh", "lblcr"]),
            any::<u32>(),
            any::<u32>(),
            netmask,
            prop::option::of("[a-z]{1,15}"),
            stats(),
        )
            .prop_map(|(id, sched, flags, timeout, netmask, pe, stats)| {
                let mut s = Service::new(id, sched)
                    .with_flags(ServiceFlags::from_bits_retain(flags))
                    .with_netmask(netmask);
                s.timeout = timeout;
                s.persistence_engine = pe;
                s.stats = stats;
                s
            })
    })
}

fn dest() -> impl Strategy<Value = Destination> {
    (
        any::<bool>().prop_flat_map(ip),
        any::<u16>(),
        0u32..8,
        0u32..=65_535,
        any::<(u32, u32, u32, u32, u32)>(),
        (0u8..4, any::<u16>(), 0u16..4),
        stats(),
    )
        .prop_map(|(addr, port, fwd, weight, n, tun, stats)| {
            let mut d = Destination::new(SocketAddr::new(addr, port))
                .forward(ForwardMethod::from_raw(fwd))
                .weight(weight)
                .thresholds(n.0, n.1);
            (d.active_conns, d.inactive_conns, d.persistent_conns) = (n.2, n.3, n.4);
            if d.forward == ForwardMethod::Tunnel {
                // The kernel reports these; the listing gives them for
                // tunnels only.
                d.tunnel_type = Some(TunnelType::from_raw(tun.0));
                d.tunnel_port = Some(tun.1);
                d.tunnel_flags = Some(TunnelFlags::from_bits_truncate(tun.2));
            }
            d.stats = stats;
            d
        })
}

fn server() -> impl Strategy<Value = VirtualServer> {
    (service(), prop::collection::vec(dest(), 0..4))
        .prop_map(|(service, dests)| VirtualServer { service, dests })
}

/// What `--apply`'s reader read, as the desired-state types.
fn specs_of(read: &[ReadService]) -> Vec<VirtualServerSpec> {
    read.iter()
        .map(|r| VirtualServerSpec {
            service: ServiceSpec::from(&r.service),
            dests: r
                .destinations
                .iter()
                .map(|d| DestinationSpec::from(&d.destination))
                .collect(),
        })
        .collect()
}

proptest! {
    #[test]
    fn a_listing_reads_back_through_apply_s_reader_as_its_settings(
        table in prop::collection::vec(server(), 0..4)
    ) {
        // Counters, connection counts and `hashed` are the kernel's: the
        // reader drops them; a real server without a tunnel reads with the
        // kernel's tunnel defaults.
        let listed: Vec<(Service, Vec<Destination>)> = table
            .iter()
            .map(|v| (v.service.clone(), v.dests.clone()))
            .collect();
        let read = read_table(table_doc(None, &listed).as_bytes()).unwrap();
        let got = specs_of(&read);
        let want: Vec<VirtualServerSpec> = table.iter().map(VirtualServerSpec::from).collect();
        prop_assert_eq!(got, want);
        prop_assert!(read.iter().all(|r| r.service.stats.is_none()
            && r.destinations.iter().all(|d| d.upper_given && d.lower_given
                && d.destination.stats.is_none() && d.destination.active_conns == 0)));
    }

    #[test]
    fn the_model_reads_back_as_itself(v in server()) {
        let text = serde_json::to_string(&v).unwrap();
        let back: VirtualServer = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back, v);
    }

    #[test]
    fn a_desired_table_reads_back_through_apply_s_reader(
        table in prop::collection::vec(server(), 0..4)
    ) {
        let specs: Vec<VirtualServerSpec> = table.iter().map(VirtualServerSpec::from).collect();
        let doc = serde_json::json!({ "schema": "ipvsadm-rs/v2", "services": &specs });
        let read = read_table(doc.to_string().as_bytes()).unwrap();
        let got = specs_of(&read);
        prop_assert_eq!(&got, &specs);
        // And the specs read back as themselves.
        let back: Vec<VirtualServerSpec> =
            serde_json::from_value(doc["services"].clone()).unwrap();
        prop_assert_eq!(back, specs);
    }
}

#[test]
fn a_service_id_is_its_display_string() {
    let id = ServiceId::udp("[2001:db8::1]:53".parse().unwrap());
    let text = serde_json::to_string(&id).unwrap();
    assert_eq!(text, "\"UDP [2001:db8::1]:53\"");
    assert_eq!(serde_json::from_str::<ServiceId>(&text).unwrap(), id);
    let err = serde_json::from_str::<ServiceId>("\"TCP nowhere\"").unwrap_err();
    assert!(err.to_string().contains("TCP nowhere"), "{err}");
}

#[test]
fn a_bad_value_is_an_error_that_names_it() {
    let err = serde_json::from_str::<Destination>(
        r#"{"address": "10.0.0.1", "port": 80, "forward": "teleport", "weight": 1}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("teleport"), "{err}");
    let err = serde_json::from_str::<Service>(
        r#"{"protocol": "tcp", "address": "10.0.0.1", "port": 80, "fwmark": 3, "scheduler": "rr"}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("either fwmark"), "{err}");
}
