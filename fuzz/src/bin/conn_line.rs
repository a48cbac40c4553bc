//! AFL++ target `conn_line`: see `ipvs_tests::fuzz::conn_line`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        ipvs_tests::fuzz::conn_line(data);
    });
}
