//! AFL++ target `argv`: see `ipvs_tests::fuzz::argv`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        ipvs_tests::fuzz::argv(data);
    });
}
