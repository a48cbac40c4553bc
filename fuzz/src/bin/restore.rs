//! AFL++ target `restore`: see `ipvs_tests::fuzz::restore`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        ipvs_tests::fuzz::restore(data);
    });
}
