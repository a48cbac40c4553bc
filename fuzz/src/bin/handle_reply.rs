//! AFL++ target `handle_reply`: see `ipvs_tests::fuzz::handle_reply`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        ipvs_tests::fuzz::handle_reply(data);
    });
}
