//! Marks the build that runs inside the test VM.
//!
//! `vm-tests/run.sh` builds the test binaries with `VM_TESTS_BUILD=1`
//! (vm-tests/scripts/build.sh), which sets `cfg(test_vm)`. Every VM test
//! carries `#[cfg_attr(not(test_vm), ignore = "...")]`: on a plain host
//! (`cargo test --workspace`) each is listed as ignored with the command
//! that runs it, and in the VM's build none is ignored, so none can be
//! skipped there.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(test_vm)");
    println!("cargo::rerun-if-env-changed=VM_TESTS_BUILD");
    if std::env::var_os("VM_TESTS_BUILD").is_some_and(|v| v == "1") {
        println!("cargo::rustc-cfg=test_vm");
    }
}
