//! Debian's nft in the VM: a table with the pieces the packet path of
//! `--from-k8s` uses (sets, concatenations, a verdict map, a NAT chain
//! with masquerade, reject, ct and fib) is loaded with `nft -f` and listed
//! back by the kernel, in a fresh network namespace. (nft 1.0.6 wants a
//! newline or `;` after a chain's last rule: `chain c { drop }` on one line
//! is a syntax error.)

use vm_tests::{enter_fresh_netns, nft, nft_ok, nft_run};

const TABLE: &str = r#"
table inet vmtest {
    set vips-v4 {
        type ipv4_addr
        elements = { 10.96.0.10 }
    }
    set served-v4 {
        type ipv4_addr . inet_proto . inet_service
        elements = { 10.96.0.10 . tcp . 80 }
    }
    set allow-v4 {
        type ipv4_addr . inet_proto . inet_service . ipv4_addr
        flags interval
        elements = { 10.96.0.10 . tcp . 80 . 192.168.0.0/24 }
    }
    map services-v4 {
        type ipv4_addr . inet_proto . inet_service : verdict
        elements = { 10.96.0.10 . tcp . 80 : jump mark-masq }
    }
    chain mark-masq {
        meta mark set meta mark | 0x00004000
    }
    chain prerouting {
        type filter hook prerouting priority -150; policy accept;
        ip daddr . meta l4proto . th dport vmap @services-v4
    }
    chain input {
        type filter hook input priority 0; policy accept;
        fib daddr type local ct state new ip daddr @vips-v4 ip daddr . meta l4proto . th dport != @served-v4 reject
        ip daddr . ip protocol . th dport . ip saddr @allow-v4 accept
    }
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        meta mark & 0x00004000 == 0x00004000 masquerade fully-random
    }
}
"#;

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn nft_loads_a_table_and_the_kernel_lists_it() {
    enter_fresh_netns().unwrap();
    let version = nft_ok(&["--version"], "");
    eprintln!("{}: {version}", nft().display());
    assert!(version.starts_with("nftables v1.0.6"), "{version}");
    nft_ok(&["-f", "-"], TABLE);
    let listed = nft_ok(&["list", "table", "inet", "vmtest"], "");
    for want in [
        "10.96.0.10 . tcp . 80 : jump mark-masq",
        "10.96.0.10 . tcp . 80 . 192.168.0.0/24",
        "type nat hook postrouting priority srcnat; policy accept;",
        "masquerade fully-random",
        "reject",
        "ct state new",
        "fib daddr type local",
    ] {
        assert!(listed.contains(want), "no {want:?} in:\n{listed}");
    }
    // The table is replaced whole in one transaction, and deleted.
    nft_ok(
        &["-f", "-"],
        "add table inet vmtest\ndelete table inet vmtest\nadd table inet vmtest\n",
    );
    assert_eq!(nft_ok(&["list", "ruleset"], ""), "table inet vmtest {\n}\n");
    nft_ok(&["delete", "table", "inet", "vmtest"], "");
    assert_eq!(nft_ok(&["list", "ruleset"], ""), "");
    let bad = nft_run(&["-f", "-"], "table inet vmtest { chain c { nonsense } }\n");
    assert_eq!(bad.code, Some(1), "{bad}");
}
