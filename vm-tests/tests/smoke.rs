//! Smoke test of the VM itself: the real ipvsadm talks to the kernel's IPVS.

use vm_tests::{enter_fresh_netns, ipvsadm, run};

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn real_ipvsadm_adds_lists_and_clears_a_service() {
    enter_fresh_netns().expect("cannot enter a fresh network namespace");
    let ipvsadm = ipvsadm();

    let add = run(&ipvsadm, ["-A", "-t", "10.97.97.97:80", "-s", "rr"]);
    assert!(add.status.success(), "ipvsadm -A failed: {add:?}");

    let list = run(&ipvsadm, ["-Ln"]);
    assert!(list.status.success(), "ipvsadm -Ln failed: {list:?}");
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.starts_with("IP Virtual Server version "),
        "unexpected listing:\n{text}"
    );
    assert!(
        text.contains("TCP  10.97.97.97:80 rr"),
        "service missing from listing:\n{text}"
    );

    let clear = run(&ipvsadm, ["-C"]);
    assert!(clear.status.success(), "ipvsadm -C failed: {clear:?}");
    let list = run(&ipvsadm, ["-Ln"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        !text.contains("10.97.97.97"),
        "service still listed after -C:\n{text}"
    );
}
