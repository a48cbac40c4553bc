//! Properties of the packet layer: typed values round-trip through bytes,
//! bytes re-emit identically, and no input makes a parser panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipvs_netlink::netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NlaBuffer, NlasIterator, Parseable,
    ParseableParametrized, NLM_F_ACK, NLM_F_MULTIPART, NLM_F_REQUEST,
};
use ipvs_netlink::netlink_packet_generic::{GenlHeader, GenlMessage};
use ipvs_netlink::{
    AddressFamily, DestAttr, Destination, ForwardMethod, Info, IpvsAttr, IpvsCmd, IpvsMessage,
    Netmask, Op, Protocol, Request, Service, ServiceAttr, ServiceFlags, ServiceId, Stats,
    StatsAttr, TunnelFlags, TunnelType,
};
use ipvs_tests::{emit, sample_stats, FAMILY_ID};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Strategies

fn family() -> impl Strategy<Value = AddressFamily> {
    prop_oneof![Just(AddressFamily::Inet), Just(AddressFamily::Inet6)]
}

fn ip_of(family: AddressFamily) -> BoxedStrategy<IpAddr> {
    match family {
        AddressFamily::Inet => any::<[u8; 4]>()
            .prop_map(|b| IpAddr::V4(Ipv4Addr::from(b)))
            .boxed(),
        AddressFamily::Inet6 => any::<[u8; 16]>()
            .prop_map(|b| IpAddr::V6(Ipv6Addr::from(b)))
            .boxed(),
    }
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Sctp)
    ]
}

fn service_id() -> impl Strategy<Value = ServiceId> {
    prop_oneof![
        (protocol(), family().prop_flat_map(ip_of), any::<u16>()).prop_map(
            |(protocol, addr, port)| ServiceId::Inet {
                protocol,
                addr,
                port
            }
        ),
        // Mark 0 is no fwmark service: the kernel (and the parser) read
        // such a nest as an inet service.
        (family(), 1..=u32::MAX).prop_map(|(family, mark)| ServiceId::Fwmark { family, mark }),
    ]
}

fn netmask_of(family: AddressFamily) -> BoxedStrategy<Netmask> {
    match family {
        AddressFamily::Inet => any::<[u8; 4]>()
            .prop_map(|b| Netmask::V4(Ipv4Addr::from(b)))
            .boxed(),
        AddressFamily::Inet6 => (0u32..=128).prop_map(Netmask::V6).boxed(),
    }
}

fn service() -> impl Strategy<Value = Service> {
    service_id().prop_flat_map(|id| {
        (
            Just(id),
            "[a-z0-9]{0,15}",
            any::<u32>(),
            any::<u32>(),
            netmask_of(id.family()),
            // An empty PE name reads back as none, as from the kernel.
            proptest::option::of("[a-z0-9]{1,15}"),
        )
            .prop_map(|(id, sched, flags, timeout, netmask, pe)| {
                let mut svc = Service::new(id, sched)
                    .with_flags(ServiceFlags::from_bits_retain(flags))
                    .with_netmask(netmask);
                svc.timeout = timeout;
                if let Some(pe) = pe {
                    svc = svc.with_persistence_engine(pe);
                }
                svc
            })
    })
}

fn forward_method() -> impl Strategy<Value = ForwardMethod> {
    prop_oneof![
        Just(ForwardMethod::Masquerade),
        Just(ForwardMethod::Local),
        Just(ForwardMethod::Tunnel),
        Just(ForwardMethod::DirectRoute),
        Just(ForwardMethod::Bypass),
        (5u32..=7).prop_map(ForwardMethod::Other),
    ]
}

fn tunnel_type() -> impl Strategy<Value = TunnelType> {
    prop_oneof![
        Just(TunnelType::Ipip),
        Just(TunnelType::Gue),
        Just(TunnelType::Gre),
        (3u8..).prop_map(TunnelType::Other),
    ]
}

/// A destination of a service of `family` (mostly the same family; the
/// other one as for tunnels).
fn destination_of(family: AddressFamily) -> impl Strategy<Value = Destination> {
    let addr = prop_oneof![
        4 => ip_of(family),
        1 => ip_of(match family {
            AddressFamily::Inet => AddressFamily::Inet6,
            AddressFamily::Inet6 => AddressFamily::Inet,
        }),
    ];
    (
        addr,
        any::<u16>(),
        forward_method(),
        any::<u32>(),
        any::<(u32, u32)>(),
        proptest::option::of(tunnel_type()),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u16>()),
    )
        .prop_map(
            |(addr, port, fwd, weight, (upper, lower), tun, tun_port, tun_flags)| {
                let mut d = Destination::new((addr, port).into())
                    .forward(fwd)
                    .weight(weight)
                    .thresholds(upper, lower);
                d.tunnel_type = tun;
                d.tunnel_port = tun_port;
                d.tunnel_flags = tun_flags.map(TunnelFlags::from_bits_retain);
                d
            },
        )
}

fn service_and_dest() -> impl Strategy<Value = (ServiceId, Destination)> {
    service_id().prop_flat_map(|id| (Just(id), destination_of(id.family())))
}

fn stats() -> impl Strategy<Value = Stats> {
    proptest::array::uniform10(any::<u64>()).prop_map(|v| {
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
    })
}

// ---------------------------------------------------------------------------
// Helpers

fn parse(bytes: &[u8], cmd: IpvsCmd) -> IpvsMessage {
    IpvsMessage::parse_with_param(
        bytes,
        GenlHeader {
            cmd: cmd.into(),
            version: 1,
        },
    )
    .expect("emitted message parses")
}

/// A whole netlink datagram carrying `msg`, as the kernel would send it.
fn netlink_bytes(msg: &IpvsMessage) -> Vec<u8> {
    let mut genl = GenlMessage::from_payload(msg.clone());
    genl.set_resolved_family_id(FAMILY_ID);
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_MULTIPART;
    header.sequence_number = 9;
    header.port_number = 4242;
    let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(genl));
    nl.finalize();
    let mut out = vec![0u8; nl.buffer_len()];
    nl.serialize(&mut out);
    out
}

/// Emits `msg`, parses it back as `cmd` and re-emits it, alone and inside
/// a whole netlink message: each step must give the same message and the
/// same bytes. The parsed message.
fn round_trip(msg: &IpvsMessage, cmd: IpvsCmd) -> Result<IpvsMessage, TestCaseError> {
    let bytes = emit(msg);
    prop_assert_eq!(bytes.len() % 4, 0);
    let parsed = parse(&bytes, cmd);
    prop_assert_eq!(&parsed, msg);
    prop_assert_eq!(emit(&parsed), bytes);
    let wire = netlink_bytes(msg);
    let again = deserialize(&wire).unwrap();
    prop_assert_eq!(&again, msg);
    prop_assert_eq!(netlink_bytes(&again), wire);
    Ok(parsed)
}

fn deserialize(bytes: &[u8]) -> Result<IpvsMessage, String> {
    let nl = NetlinkMessage::<GenlMessage<IpvsMessage>>::deserialize(bytes)
        .map_err(|e| e.to_string())?;
    match nl.payload {
        NetlinkPayload::InnerMessage(genl) => Ok(genl.payload),
        other => Err(format!("not an inner message: {other:?}")),
    }
}

/// Everything a consumer of a parsed message might do with it; must never
/// panic whatever the message holds.
fn consume(msg: &IpvsMessage) {
    if let Some(attrs) = msg.service_attrs() {
        let _ = Service::from_attrs(attrs);
        let _ = ServiceId::from_attrs(attrs);
    }
    if let Some(attrs) = msg.dest_attrs() {
        let _ = Destination::from_attrs(attrs, AddressFamily::Inet);
        let _ = Destination::from_attrs(attrs, AddressFamily::Inet6);
    }
    let info: Vec<_> = msg
        .attrs
        .iter()
        .filter_map(|a| match a {
            IpvsAttr::Info(i) => Some(i.clone()),
            _ => None,
        })
        .collect();
    let _ = Info::from_attrs(&info);
    for attr in &msg.attrs {
        let nested: Vec<&[StatsAttr]> = match attr {
            IpvsAttr::Service(a) => a
                .iter()
                .filter_map(|a| match a {
                    ServiceAttr::Stats(s) | ServiceAttr::Stats64(s) => Some(s.as_slice()),
                    _ => None,
                })
                .collect(),
            IpvsAttr::Dest(a) => a
                .iter()
                .filter_map(|a| match a {
                    DestAttr::Stats(s) | DestAttr::Stats64(s) => Some(s.as_slice()),
                    _ => None,
                })
                .collect(),
            _ => vec![],
        };
        for s in nested {
            let _ = Stats::from_attrs(s);
        }
    }
}

/// Parses `bytes` as every command; whatever parses is consumed, re-emitted
/// and re-parsed: emitting normalises (string padding, legacy counter
/// width), so the second emission must equal the first.
fn parse_everything(bytes: &[u8]) {
    for cmd in 0u8..=20 {
        let header = GenlHeader { cmd, version: 1 };
        if let Ok(msg) = IpvsMessage::parse_with_param(bytes, header) {
            consume(&msg);
            let once = emit(&msg);
            let again = IpvsMessage::parse_with_param(&once, header)
                .expect("a parsed message re-emits parseable bytes");
            consume(&again);
            assert_eq!(emit(&again), once, "emission is a fixed point");
        }
    }
    if let Ok(msg) = deserialize(bytes) {
        consume(&msg);
    }
}

fn mutate(mut bytes: Vec<u8>, flips: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    if !bytes.is_empty() {
        for &(at, xor) in flips {
            let at = at % bytes.len();
            bytes[at] ^= xor;
        }
    }
    if let Some(cut) = cut {
        bytes.truncate(cut % (bytes.len() + 1));
    }
    bytes
}

// ---------------------------------------------------------------------------
// Round trips

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn service_round_trips(svc in service(), cmd in prop_oneof![
        Just(IpvsCmd::NewService), Just(IpvsCmd::SetService), Just(IpvsCmd::GetService)
    ]) {
        let msg = IpvsMessage::new(cmd, vec![IpvsAttr::Service(svc.to_attrs())]);
        let parsed = round_trip(&msg, cmd)?;
        let back = Service::from_attrs(parsed.service_attrs().unwrap()).unwrap();
        prop_assert_eq!(back.stats, None);
        prop_assert_eq!(&back, &svc);
    }

    #[test]
    fn destination_round_trips((id, dest) in service_and_dest()) {
        let cmd = IpvsCmd::NewDest;
        let msg = IpvsMessage::new(cmd, vec![
            IpvsAttr::Service(id.to_attrs()),
            IpvsAttr::Dest(dest.to_attrs()),
        ]);
        let parsed = round_trip(&msg, cmd)?;
        prop_assert_eq!(ServiceId::from_attrs(parsed.service_attrs().unwrap()).unwrap(), id);
        let back = Destination::from_attrs(parsed.dest_attrs().unwrap(), id.family()).unwrap();
        prop_assert_eq!(back.stats, None);
        prop_assert_eq!(&back, &dest);
    }

    #[test]
    fn kernel_style_service_with_stats_round_trips(svc in service(), st in stats()) {
        let mut attrs = svc.to_attrs();
        attrs.push(ServiceAttr::Stats(st.to_attrs()));
        attrs.push(ServiceAttr::Stats64(st.to_attrs()));
        let msg = IpvsMessage::new(IpvsCmd::NewService, vec![IpvsAttr::Service(attrs)]);
        let bytes = emit(&msg);
        let parsed = parse(&bytes, IpvsCmd::NewService);
        let back = Service::from_attrs(parsed.service_attrs().unwrap()).unwrap();
        // STATS64 wins over the truncated legacy nest.
        prop_assert_eq!(back.stats, Some(st));
        let mut expected = svc.clone();
        expected.stats = Some(st);
        prop_assert_eq!(back, expected);
        prop_assert_eq!(emit(&parsed), bytes);
    }

    #[test]
    fn stats64_nest_round_trips_wide_values(st in stats()) {
        for nest in [
            IpvsAttr::Service(vec![ServiceAttr::Stats64(st.to_attrs())]),
            IpvsAttr::Dest(vec![DestAttr::Stats64(st.to_attrs())]),
        ] {
            let msg = IpvsMessage::new(IpvsCmd::NewService, vec![nest.clone()]);
            let parsed = parse(&emit(&msg), IpvsCmd::NewService);
            prop_assert_eq!(&parsed.attrs, &vec![nest]);
            let got = match &parsed.attrs[0] {
                IpvsAttr::Service(a) => match &a[0] {
                    ServiceAttr::Stats64(s) => Stats::from_attrs(s),
                    other => panic!("{other:?}"),
                },
                IpvsAttr::Dest(a) => match &a[0] {
                    DestAttr::Stats64(s) => Stats::from_attrs(s),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            };
            prop_assert_eq!(got, st);
        }
    }

    #[test]
    fn legacy_stats_nest_is_32_bit_but_for_bytes(st in stats()) {
        let attr = ServiceAttr::Stats(st.to_attrs());
        let slice: &[ServiceAttr] = &[attr];
        let bytes = emit(&slice);
        let nest = NlaBuffer::new_checked(&bytes[..]).unwrap();
        prop_assert_eq!(nest.kind(), 10);
        let mut kinds = Vec::new();
        for nla in NlasIterator::new(nest.value()) {
            let nla = nla.unwrap();
            let want = if matches!(nla.kind(), 4 | 5) { 8 } else { 4 };
            prop_assert_eq!(nla.value().len(), want, "kind {}", nla.kind());
            kinds.push(nla.kind());
        }
        prop_assert_eq!(kinds, (1..=10).collect::<Vec<u16>>());
        // Read back: bytes whole, the rest cut to 32 bits like the kernel.
        let parsed = parse(
            &emit(&IpvsMessage::new(
                IpvsCmd::NewService,
                vec![IpvsAttr::Service(vec![ServiceAttr::Stats(st.to_attrs())])],
            )),
            IpvsCmd::NewService,
        );
        let got = match &parsed.service_attrs().unwrap()[0] {
            ServiceAttr::Stats(s) => Stats::from_attrs(s),
            other => panic!("{other:?}"),
        };
        let cut = |v: u64| u64::from(v as u32);
        prop_assert_eq!(got.conns, cut(st.conns));
        prop_assert_eq!(got.in_pkts, cut(st.in_pkts));
        prop_assert_eq!(got.out_pkts, cut(st.out_pkts));
        prop_assert_eq!(got.in_bytes, st.in_bytes);
        prop_assert_eq!(got.out_bytes, st.out_bytes);
        prop_assert_eq!(got.cps, cut(st.cps));
        prop_assert_eq!(got.in_pps, cut(st.in_pps));
        prop_assert_eq!(got.out_pps, cut(st.out_pps));
        prop_assert_eq!(got.in_bps, cut(st.in_bps));
        prop_assert_eq!(got.out_bps, cut(st.out_bps));
    }
}

// ---------------------------------------------------------------------------
// No input panics

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        parse_everything(&bytes);
    }

    /// Arbitrary payloads behind a valid netlink header, so that
    /// `NetlinkMessage::deserialize` reaches the IPVS parser.
    #[test]
    fn arbitrary_payload_in_a_valid_frame_never_panics(
        message_type in prop_oneof![Just(FAMILY_ID), 1u16..=4],
        payload in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut frame = Vec::with_capacity(16 + payload.len());
        frame.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        frame.extend_from_slice(&message_type.to_ne_bytes());
        frame.extend_from_slice(&[0; 10]);
        frame.extend_from_slice(&payload);
        let _ = deserialize(&frame);
        if payload.len() >= 4 {
            parse_everything(&payload[4..]);
        }
    }

    /// Attribute soup: a sequence of well-framed attributes of any kind and
    /// small length (much more likely to reach the attribute parsers than
    /// uniform bytes), optionally nested one level.
    #[test]
    fn attribute_soup_never_panics(
        attrs in proptest::collection::vec(
            (0u16..=16, proptest::collection::vec(any::<u8>(), 0..40), any::<bool>()),
            0..8,
        ),
        outer in 0u16..=8,
    ) {
        let mut inner = Vec::new();
        for (kind, value, _) in &attrs {
            inner.extend_from_slice(&ipvs_tests::raw_nla(*kind, (4 + value.len()) as u16, value));
        }
        parse_everything(&inner);
        let nested = ipvs_tests::raw_nla(outer, (4 + inner.len()) as u16, &inner);
        parse_everything(&nested);
        // And as stats nests inside a service and a destination nest.
        if let Some((_, _, wide)) = attrs.first() {
            let stats_kind = if *wide { 12 } else { 10 };
            let stats = ipvs_tests::raw_nla(stats_kind, (4 + inner.len()) as u16, &inner);
            for top in [1u16, 2] {
                parse_everything(&ipvs_tests::raw_nla(top, (4 + stats.len()) as u16, &stats));
            }
        }
    }

    #[test]
    fn mutated_service_messages_never_panic(
        svc in service(),
        st in proptest::option::of(stats()),
        flips in proptest::collection::vec((any::<usize>(), 1u8..), 0..6),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let mut attrs = svc.to_attrs();
        if let Some(st) = st {
            attrs.push(ServiceAttr::Stats(st.to_attrs()));
            attrs.push(ServiceAttr::Stats64(st.to_attrs()));
        }
        let msg = IpvsMessage::new(IpvsCmd::NewService, vec![IpvsAttr::Service(attrs)]);
        parse_everything(&mutate(emit(&msg), &flips, cut));
        parse_everything(&mutate(netlink_bytes(&msg), &flips, cut));
    }

    #[test]
    fn the_direct_destination_parse_agrees_with_the_attribute_path(
        (id, mut dest) in service_and_dest(),
        st in proptest::option::of(stats()),
        flips in proptest::collection::vec((any::<usize>(), 1u8..), 0..6),
        cut in proptest::option::of(any::<usize>()),
    ) {
        dest.stats = st;
        dest.active_conns = 7;
        let mut attrs = dest.to_attrs();
        attrs.push(DestAttr::ActiveConns(7));
        if let Some(st) = st {
            attrs.push(DestAttr::Stats(st.to_attrs()));
            attrs.push(DestAttr::Stats64(st.to_attrs()));
        }
        let nest = mutate(emit(&attrs.as_slice()), &flips, cut);
        let via_attrs = NlasIterator::new(&nest[..])
            .map(|nla| nla.and_then(|nla| <DestAttr as Parseable<_>>::parse(&nla)))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|attrs| Destination::from_attrs(&attrs, id.family()));
        let direct = Destination::parse_nest(&nest, id.family());
        match (via_attrs, direct) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "attribute path {a:?}, direct {b:?}"),
        }
        if flips.is_empty() && cut.is_none() {
            let back = Destination::parse_nest(&nest, id.family()).unwrap();
            prop_assert_eq!(back, dest);
        }
    }

    #[test]
    fn mutated_dest_messages_never_panic(
        (id, mut dest) in service_and_dest(),
        st in proptest::option::of(stats()),
        flips in proptest::collection::vec((any::<usize>(), 1u8..), 0..6),
        cut in proptest::option::of(any::<usize>()),
    ) {
        dest.stats = st;
        let mut attrs = dest.to_attrs();
        if let Some(st) = st {
            attrs.push(DestAttr::Stats(st.to_attrs()));
            attrs.push(DestAttr::Stats64(st.to_attrs()));
        }
        let msg = IpvsMessage::new(IpvsCmd::NewDest, vec![
            IpvsAttr::Service(id.to_attrs()),
            IpvsAttr::Dest(attrs),
        ]);
        parse_everything(&mutate(emit(&msg), &flips, cut));
        parse_everything(&mutate(netlink_bytes(&msg), &flips, cut));
    }
}

// ---------------------------------------------------------------------------
// Fixed examples

#[test]
fn stats64_values_above_u32_survive_a_service() {
    let st = sample_stats(u64::from(u32::MAX) * 3);
    let mut svc = Service::new(ServiceId::tcp("10.0.0.1:80".parse().unwrap()), "rr");
    let mut attrs = svc.to_attrs();
    attrs.push(ServiceAttr::Stats(st.to_attrs()));
    attrs.push(ServiceAttr::Stats64(st.to_attrs()));
    let msg = IpvsMessage::new(IpvsCmd::NewService, vec![IpvsAttr::Service(attrs)]);
    let parsed = parse(&emit(&msg), IpvsCmd::NewService);
    svc.stats = Some(st);
    assert_eq!(
        Service::from_attrs(parsed.service_attrs().unwrap()).unwrap(),
        svc
    );
}

#[test]
fn legacy_stats_alone_are_used_when_there_is_no_stats64() {
    let st = sample_stats(41);
    let mut dest = Destination::new("10.0.0.2:80".parse().unwrap());
    let mut attrs = dest.to_attrs();
    attrs.push(DestAttr::Stats(st.to_attrs()));
    let msg = IpvsMessage::new(IpvsCmd::NewDest, vec![IpvsAttr::Dest(attrs)]);
    let parsed = parse(&emit(&msg), IpvsCmd::NewDest);
    dest.stats = Some(st);
    assert_eq!(
        Destination::from_attrs(parsed.dest_attrs().unwrap(), AddressFamily::Inet).unwrap(),
        dest
    );
}

// ---------------------------------------------------------------------------
// Wire layout, byte for byte (round trips alone would accept a symmetric
// mistake such as a port in host order both ways)

fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
    ipvs_tests::raw_nla(kind, (4 + value.len()) as u16, value)
}

fn addr16(octets: &[u8]) -> Vec<u8> {
    let mut a = octets.to_vec();
    a.resize(16, 0);
    a
}

#[test]
fn service_nest_wire_layout() {
    let svc = Service::new(ServiceId::tcp("10.97.97.97:80".parse().unwrap()), "rr")
        .persistent(300)
        .with_persistence_engine("sip");
    let nest: Vec<u8> = [
        nla(1, &2u16.to_ne_bytes()),
        nla(2, &6u16.to_ne_bytes()),
        nla(3, &addr16(&[10, 97, 97, 97])),
        nla(4, &[0, 80]),
        nla(6, b"rr\0"),
        nla(11, b"sip\0"),
        nla(7, &[1u32.to_ne_bytes(), u32::MAX.to_ne_bytes()].concat()),
        nla(8, &300u32.to_ne_bytes()),
        nla(9, &[255, 255, 255, 255]),
    ]
    .concat();
    let golden = nla(1, &nest);
    let msg = IpvsMessage::new(IpvsCmd::NewService, vec![IpvsAttr::Service(svc.to_attrs())]);
    assert_eq!(emit(&msg), golden);
    let parsed = parse(&golden, IpvsCmd::NewService);
    assert_eq!(
        Service::from_attrs(parsed.service_attrs().unwrap()).unwrap(),
        svc
    );

    let v6 = Service::new(ServiceId::udp("[2001:db8::1]:53".parse().unwrap()), "wlc")
        .with_netmask(Netmask::V6(64));
    let attrs = v6.to_attrs();
    let bytes = emit(&IpvsMessage::new(
        IpvsCmd::NewService,
        vec![IpvsAttr::Service(attrs)],
    ));
    let ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let want_addr = nla(3, &ip.octets());
    assert!(bytes.windows(want_addr.len()).any(|w| w == want_addr));
    let want_mask = nla(9, &64u32.to_ne_bytes());
    assert!(bytes.ends_with(&want_mask));

    let fwm = Service::new(ServiceId::fwmark(AddressFamily::Inet6, 0x1234), "sh");
    let fwm_nest: Vec<u8> = [
        nla(1, &10u16.to_ne_bytes()),
        nla(5, &0x1234u32.to_ne_bytes()),
    ]
    .concat();
    assert!(emit(&IpvsMessage::new(
        IpvsCmd::DelService,
        vec![IpvsAttr::Service(fwm.id.to_attrs())]
    ))
    .ends_with(&fwm_nest));
}

#[test]
fn dest_nest_wire_layout() {
    let mut dest = Destination::new("10.244.1.39:8080".parse().unwrap())
        .weight(3)
        .forward(ForwardMethod::DirectRoute)
        .thresholds(100, 50);
    dest.tunnel_type = Some(TunnelType::Gue);
    dest.tunnel_port = Some(6080);
    dest.tunnel_flags = Some(TunnelFlags::CSUM);
    let nest: Vec<u8> = [
        nla(11, &2u16.to_ne_bytes()),
        nla(1, &addr16(&[10, 244, 1, 39])),
        nla(2, &8080u16.to_be_bytes()),
        nla(3, &3u32.to_ne_bytes()),
        nla(4, &3u32.to_ne_bytes()),
        nla(13, &[1]),
        nla(14, &6080u16.to_be_bytes()),
        nla(15, &1u16.to_ne_bytes()),
        nla(5, &100u32.to_ne_bytes()),
        nla(6, &50u32.to_ne_bytes()),
    ]
    .concat();
    let golden = nla(2, &nest);
    let msg = IpvsMessage::new(IpvsCmd::NewDest, vec![IpvsAttr::Dest(dest.to_attrs())]);
    assert_eq!(emit(&msg), golden);
    let parsed = parse(&golden, IpvsCmd::NewDest);
    assert_eq!(
        Destination::from_attrs(parsed.dest_attrs().unwrap(), AddressFamily::Inet).unwrap(),
        dest
    );
}

#[test]
fn info_reply_wire_layout() {
    let golden = [
        nla(1, &0x010201u32.to_ne_bytes()),
        nla(2, &4096u32.to_ne_bytes()),
    ]
    .concat();
    let parsed = parse(&golden, IpvsCmd::SetInfo);
    let attrs: Vec<_> = parsed
        .attrs
        .iter()
        .map(|a| match a {
            IpvsAttr::Info(i) => i.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let info = Info::from_attrs(&attrs).unwrap();
    assert_eq!((info.version, info.conn_table_size), (0x010201, 4096));
    assert_eq!(emit(&parsed), golden);
}

// ---------------------------------------------------------------------------
// The handle's encoder against the typed messages

/// `op` as the typed path writes it: [`Op::message`], a vector per nest,
/// serialised by netlink-packet-core's generic writers.
fn typed_request(op: &Op, header: NetlinkHeader) -> Vec<u8> {
    let mut genl = GenlMessage::from_payload(op.message());
    genl.set_resolved_family_id(FAMILY_ID);
    let mut header = header;
    header.flags |= NLM_F_REQUEST;
    let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(genl));
    nl.finalize();
    let mut out = vec![0u8; nl.buffer_len()];
    nl.serialize(&mut out);
    out
}

fn op() -> BoxedStrategy<Op> {
    prop_oneof![
        service().prop_map(Op::AddService).boxed(),
        service().prop_map(Op::EditService).boxed(),
        service_id().prop_map(Op::DeleteService).boxed(),
        service_and_dest()
            .prop_map(|(id, d)| Op::AddDestination(id, d))
            .boxed(),
        service_and_dest()
            .prop_map(|(id, d)| Op::EditDestination(id, d))
            .boxed(),
        service_and_dest()
            .prop_map(|(id, d)| Op::DeleteDestination(id, d.socket_addr()))
            .boxed(),
        Just(Op::Flush).boxed(),
        prop::option::of(service_id()).prop_map(Op::Zero).boxed(),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// `Request::emit`, which writes each attribute in place, writes the
    /// bytes of the typed message of the same op, after whatever the
    /// datagram already holds.
    #[test]
    fn the_request_encoder_writes_the_typed_messages_bytes(
        op in op(),
        seq in any::<u32>(),
        ack in any::<bool>(),
        before in prop::collection::vec(any::<u8>(), 0..3).prop_map(|v| v.len() * 4),
    ) {
        let mut header = NetlinkHeader::default();
        header.message_type = FAMILY_ID;
        header.sequence_number = seq;
        header.port_number = 77;
        if ack {
            header.flags = NLM_F_ACK;
        }
        let mut out = vec![0xaa; before];
        Request::Op(&op).emit(&header, &mut out);
        prop_assert!(out[..before].iter().all(|&b| b == 0xaa));
        prop_assert_eq!(&out[before..], &typed_request(&op, header)[..]);
    }
}
