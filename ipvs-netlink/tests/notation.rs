//! `Display` and `FromStr` of `ServiceId`, `ForwardMethod` and
//! `ServiceFlags`: each reads what it writes, for every value, and reads
//! ipvsadm's notation (its listings, its `-b` flags, its long options).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipvs_netlink::{AddressFamily, ForwardMethod, Protocol, ServiceFlags, ServiceId};
use proptest::prelude::*;

fn service_id() -> impl Strategy<Value = ServiceId> {
    let ip = prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
    ];
    prop_oneof![
        (0u16..300, ip, any::<u16>()).prop_map(|(p, addr, port)| ServiceId::Inet {
            protocol: Protocol::from_raw(p),
            addr,
            port,
        }),
        (any::<bool>(), any::<u32>()).prop_map(|(v6, mark)| ServiceId::Fwmark {
            family: if v6 {
                AddressFamily::Inet6
            } else {
                AddressFamily::Inet
            },
            mark,
        }),
    ]
}

proptest! {
    #[test]
    fn service_ids_read_what_they_write(id in service_id()) {
        prop_assert_eq!(id.to_string().parse::<ServiceId>(), Ok(id));
    }

    #[test]
    fn forward_methods_read_what_they_write(raw in 0u32..8) {
        let fwd = ForwardMethod::from_raw(raw);
        prop_assert_eq!(fwd.to_string().parse::<ForwardMethod>(), Ok(fwd));
    }

    #[test]
    fn service_flags_read_what_they_write(bits in any::<u32>()) {
        let flags = ServiceFlags::from_bits_retain(bits);
        prop_assert_eq!(flags.to_string().parse::<ServiceFlags>(), Ok(flags));
    }
}

#[test]
fn ipvsadm_notation() {
    // `ipvsadm -Ln` of the demo table (README.md): the service's words,
    // two blanks apart, and the destination's forwarding column.
    let row = "TCP  10.97.97.97:80 rr";
    let words: Vec<&str> = row.split_whitespace().collect();
    let id: ServiceId = words[..2].join("  ").parse().unwrap();
    assert_eq!(id, ServiceId::tcp("10.97.97.97:80".parse().unwrap()));
    assert_eq!(id.to_string(), "TCP 10.97.97.97:80");
    let dest = "  -> 10.244.1.39:80               Masq    1      0          0";
    let fwd: ForwardMethod = dest.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert_eq!(fwd, ForwardMethod::Masquerade);
    for (name, fwd) in [
        ("Route", ForwardMethod::DirectRoute),
        ("Tunnel", ForwardMethod::Tunnel),
        ("Local", ForwardMethod::Local),
        ("gatewaying", ForwardMethod::DirectRoute),
        ("ipip", ForwardMethod::Tunnel),
    ] {
        assert_eq!(name.parse::<ForwardMethod>(), Ok(fwd), "{name}");
    }
    assert_eq!(
        "UDP [2001:db8::1]:53".parse::<ServiceId>(),
        Ok(ServiceId::udp(SocketAddr::from((
            "2001:db8::1".parse::<Ipv6Addr>().unwrap(),
            53
        ))))
    );
    assert_eq!(
        "FWM  42".parse::<ServiceId>(),
        Ok(ServiceId::fwmark(AddressFamily::Inet, 42))
    );
    assert_eq!(
        "fwm 42 ipv6".parse::<ServiceId>(),
        Ok(ServiceId::fwmark(AddressFamily::Inet6, 42))
    );
    // ipvsadm's -b takes these names, whatever the scheduler.
    for (text, flags) in [
        (
            "sh-fallback,sh-port",
            ServiceFlags::SCHED1 | ServiceFlags::SCHED2,
        ),
        ("mh-port", ServiceFlags::SCHED2),
        ("flag-3", ServiceFlags::SCHED3),
        ("", ServiceFlags::empty()),
    ] {
        assert_eq!(text.parse::<ServiceFlags>(), Ok(flags), "{text}");
    }
    assert_eq!(
        (ServiceFlags::PERSISTENT | ServiceFlags::from_bits_retain(0x100)).to_string(),
        "persistent,0x100"
    );
}

#[test]
fn what_is_not_the_notation_is_refused_with_what_was_expected() {
    for bad in [
        "",
        "TCP",
        "TCP 10.0.0.1",
        "HTTP 10.0.0.1:80",
        "FWM x",
        "FWM 1 IPv4",
        "TCP 1.2.3.4:80 x",
    ] {
        let e = bad.parse::<ServiceId>().unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("invalid service {bad:?}: expected ")),
            "{e}"
        );
    }
    for bad in ["", "nat", "fwd-8", "fwd-x"] {
        assert!(bad.parse::<ForwardMethod>().is_err(), "{bad}");
    }
    for bad in ["fallback", "0xzz", "persistent,nosuch"] {
        assert!(bad.parse::<ServiceFlags>().is_err(), "{bad}");
    }
}
