//! `ipvsadm-rs` against the real ipvsadm 1.31: the same command on the
//! same kernel state gives the same stdout, stderr and exit code.

use std::process::Output;

use vm_tests::{enter_fresh_netns, ipvsadm, ipvsadm_rs, run};

fn apply(lines: &[&str]) {
    for line in lines {
        let out = run(&ipvsadm(), line.split_whitespace());
        assert!(
            out.status.success(),
            "setup `ipvsadm {line}` failed: {out:?}"
        );
    }
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `args` through both tools and asserts identical bytes and codes.
fn same(args: &[&str]) {
    let theirs = run(&ipvsadm(), args);
    let ours = run(&ipvsadm_rs(), args);
    assert_eq!(
        (ours.status.code(), &ours.stdout, &ours.stderr),
        (theirs.status.code(), &theirs.stdout, &theirs.stderr),
        "`{args:?}` differs\n=== ipvsadm\n{}\n=== ipvsadm-rs\n{}",
        show(&theirs),
        show(&ours)
    );
}

const RICH_TABLE: &[&str] = &[
    "-A -t 10.97.97.97:80 -s rr",
    "-a -t 10.97.97.97:80 -r 10.244.1.39:80 -m",
    "-a -t 10.97.97.97:80 -r 10.244.1.40:80 -m",
    "-a -t 10.97.97.97:80 -r 10.244.2.33:80 -m",
    "-A -t 192.168.10.1:443 -s wlc -p 600 -M 255.255.255.0",
    "-a -t 192.168.10.1:443 -r 192.168.20.2:443 -g -w 4",
    "-a -t 192.168.10.1:443 -r 10.0.0.2:8443 -m -w 0 -x 10 -y 2",
    "-A -t 10.0.0.1:22 -s lc",
    "-A -u 10.0.0.1:53 -s sh -b sh-fallback,sh-port -o",
    "-a -u 10.0.0.1:53 -r 10.0.0.53:53 -i -w 2",
    "-A --sctp-service 10.0.0.3:3868 -s rr",
    "-A -f 42 -s lc",
    "-a -f 42 -r 10.5.5.5:0 -g",
    "-A -f 4294967295 -s rr",
    "-A -f 7 -6 -s wrr -p 100 -M 64",
    "-A -t [2001:db8::1]:443 -s mh -b mh-port,mh-fallback",
    "-a -t [2001:db8::1]:443 -r [2001:db8::10]:443 -m -w 3",
    "-a -t [2001:db8::1]:443 -r [2001:db8:1234:5678:9abc:def0:1234:5678]:65535 -m",
    "-A -u 10.0.0.4:5060 -s rr -p 30 --pe sip",
    "-A -t 10.0.0.5:0 -s dh -p",
];

#[test]
fn empty_table() {
    enter_fresh_netns().unwrap();
    same(&["-Ln"]);
    same(&["-L", "-n"]);
}

#[test]
fn seed_table_listing() {
    enter_fresh_netns().unwrap();
    apply(&RICH_TABLE[..4]);
    same(&["-Ln"]);
    same(&["-ln"]);
    same(&["--list", "--numeric"]);
}

#[test]
fn rich_table_listings() {
    enter_fresh_netns().unwrap();
    apply(RICH_TABLE);
    same(&["-Ln"]);
    same(&["-Ln", "--nosort"]);
    same(&["-Ln", "--sort"]);
    same(&["-L"]);
    same(&[]);
}

#[test]
fn bad_command_lines() {
    enter_fresh_netns().unwrap();
    same(&["-n", "-L"]);
    same(&["-Ln", "-n"]);
    same(&["-L", "extra"]);
}
