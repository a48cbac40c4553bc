//! Named regression tests for what the fuzzer found (the inputs are also
//! in `fuzz/corpus/`, replayed by `fuzz_corpus.rs`).
//!
//! The first AFL++ run of `netlink_packet` (about 29,000 executions)
//! crashed the harness six times, each in netlink-packet-core's
//! `serialize` of a message it had just parsed: a parsed header keeps the
//! length field it arrived with, and when that field overstates the
//! message (a NOOP or DONE of 20 bytes whose payload is empty or 4
//! bytes), `serialize` slices the output buffer with it and panics. The
//! handle never re-emits a reply, so no caller of the library could hit
//! it; the harness now calls `finalize` first, and these tests pin both
//! facts down. A second finding: an unknown attribute's
//! NLA_F_NET_BYTEORDER flag does not survive a round trip through
//! `DefaultNla`.

use ipvs_netlink::netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use ipvs_netlink::netlink_packet_generic::GenlMessage;
use ipvs_netlink::{IpvsAttr, IpvsMessage};

type Msg = NetlinkMessage<GenlMessage<IpvsMessage>>;

fn corpus(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../fuzz/corpus/netlink_packet/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn serialize(msg: &Msg) -> Vec<u8> {
    let mut out = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut out);
    out
}

#[test]
fn an_overstated_length_parses_and_emits_once_finalized() {
    // NLMSG_NOOP announcing 20 bytes, 4 of them past its (empty) payload.
    let data = corpus("regress-reemit-0");
    let mut msg = Msg::deserialize(&data).expect("parses");
    assert!(matches!(msg.payload, NetlinkPayload::Noop));
    assert_eq!(msg.header.length, 20);
    assert_eq!(msg.buffer_len(), 16);
    msg.finalize();
    assert_eq!(serialize(&msg).len(), 16);
}

#[test]
fn a_done_announcing_no_status_parses_and_emits_once_finalized() {
    // NLMSG_DONE of 16 bytes: no room for the status the parser assumes.
    let data = corpus("regress-reemit-5");
    if let Ok(mut msg) = Msg::deserialize(&data) {
        msg.finalize();
        let once = serialize(&msg);
        assert_eq!(
            Msg::deserialize(&once).map(|m| serialize(&m)).ok(),
            Some(once)
        );
    }
}

#[test]
fn every_reemit_finding_round_trips_in_the_harness() {
    for i in 0..6 {
        ipvs_tests::fuzz::netlink_packet(&corpus(&format!("regress-reemit-{i}")));
    }
}

#[test]
fn an_unknown_attributes_byte_order_flag_is_dropped_on_emit() {
    // Found by the harness's round trip: kind 0xff00 (NLA_F_NESTED |
    // NLA_F_NET_BYTEORDER | 0x3f00) comes back as 0xbf00.
    let data = corpus("regress-reemit-4");
    let mut msg = Msg::deserialize(&data).expect("parses");
    let kinds = |m: &Msg| -> Vec<u16> {
        match &m.payload {
            NetlinkPayload::InnerMessage(g) => g
                .payload
                .attrs
                .iter()
                .filter_map(|a| match a {
                    IpvsAttr::Other(nla) => Some(ipvs_netlink::netlink_packet_core::Nla::kind(nla)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    assert!(kinds(&msg).contains(&0xff00), "{:x?}", kinds(&msg));
    msg.finalize();
    let back = Msg::deserialize(&serialize(&msg)).expect("re-parses");
    assert!(kinds(&back).contains(&0xbf00), "{:x?}", kinds(&back));
}
