//! AFL++ target `k8s_json`: see `ipvs_tests::fuzz::k8s_json`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        ipvs_tests::fuzz::k8s_json(data);
    });
}
