//! `ipvsadm-rs --netns`: every command acts on the named namespace's
//! table; several namespaces at once, each with its own table.

use vm_tests::{enter_fresh_netns, ipvsadm_rs, run_as, Netns};

fn ours(args: &[&str], stdin: &str) -> vm_tests::Outcome {
    run_as(&ipvsadm_rs(), "ipvsadm-rs", args, stdin.as_bytes())
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn commands_act_on_the_namespace_they_name() {
    enter_fresh_netns().unwrap();
    let (blue, green) = (Netns::new(), Netns::new());
    let (b, g) = (blue.path(), green.path());
    let (b, g) = (b.to_str().unwrap(), g.to_str().unwrap());
    let add = ours(&["--netns", b, "-A", "-t", "10.0.0.1:80", "-s", "rr"], "");
    assert_eq!(add.code, Some(0), "{add}");
    let restore = ours(
        &["-R", &format!("--netns={g}")],
        "-A -u 10.0.0.2:53 -s wlc\n-a -u 10.0.0.2:53 -r 10.1.0.1 -m\n",
    );
    assert_eq!(restore.code, Some(0), "{restore}");
    // Each namespace holds its own table, read by the real ipvsadm inside it.
    assert_eq!(blue.sh("/sbin/ipvsadm -Sn"), "-A -t 10.0.0.1:80 -s rr\n");
    assert_eq!(
        green.sh("/sbin/ipvsadm -Sn"),
        "-A -u 10.0.0.2:53 -s wlc\n-a -u 10.0.0.2:53 -r 10.1.0.1:53 -m -w 1\n"
    );
    // And ours lists each as the real one does there; ours here is empty.
    for (ns, path) in [(&blue, b), (&green, g)] {
        let listed = ours(&["-Ln", "--netns", path], "");
        assert_eq!(
            String::from_utf8(listed.stdout).unwrap(),
            ns.sh("/sbin/ipvsadm -Ln")
        );
        let conns = ours(&["-Lnc", "--netns", path], "");
        assert_eq!(
            String::from_utf8(conns.stdout).unwrap(),
            ns.sh("/sbin/ipvsadm -Lnc")
        );
    }
    assert_eq!(ours(&["-Sn"], "").stdout, b"");
    let json = ours(&["-Ln", "--json", "--netns", g], "");
    assert!(String::from_utf8_lossy(&json.stdout).contains("\"scheduler\": \"wlc\""));
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_namespace_that_is_not_there_is_a_plain_error() {
    let out = ours(&["--netns", "nosuch", "-Ln"], "");
    assert_eq!(out.code, Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ipvsadm-rs: --netns /run/netns/nosuch: No such file or directory (os error 2)\n"
    );
}
