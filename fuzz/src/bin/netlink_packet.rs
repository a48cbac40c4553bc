//! AFL++ target `netlink_packet`: see `ipvs_tests::fuzz::netlink_packet`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        ipvs_tests::fuzz::netlink_packet(data);
    });
}
