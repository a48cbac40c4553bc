//! Endless input (`/dev/zero`) on every reader of ipvsadm-rs: refused at
//! the bound (`IPVSADM_RS_MAX_INPUT`) with exit 2 and a message naming
//! it, instead of growing until the OOM killer ends the process.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use vm_tests::{enter_fresh_netns, ipvsadm_rs, k8s_state, run_as};

/// `ipvsadm-rs ARGS < /dev/zero` with a bound of 1 MiB: exit code and
/// stderr.
fn fed_zeros(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(ipvsadm_rs())
        .arg0("ipvsadm-rs")
        .args(args)
        .env("IPVSADM_RS_MAX_INPUT", "1M")
        .stdin(Stdio::from(File::open("/dev/zero").unwrap()))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn endless_input_is_refused_at_the_bound_with_exit_2() {
    enter_fresh_netns().unwrap();
    let state = k8s_state("bounds");
    let state = state.to_str().unwrap();
    let bound = "is longer than 1048576 bytes (the bound is set by IPVSADM_RS_MAX_INPUT)";
    let cases: [(&[&str], String); 4] = [
        (
            &["-R"],
            format!("ipvsadm-rs: line 1 of the rules {bound}: the restore stopped\n"),
        ),
        (
            &["--diff", "-"],
            format!("ipvsadm-rs: --diff -: the table {bound}\n"),
        ),
        (
            &["--apply", "-"],
            format!("ipvsadm-rs: --apply -: the table {bound}\n"),
        ),
        (
            &[
                "--from-k8s",
                "-",
                "--node-ip",
                "192.168.49.2",
                "--state",
                state,
            ],
            format!("ipvsadm-rs: --from-k8s -: the dump {bound}\n"),
        ),
    ];
    for (args, want) in cases {
        let (code, stderr) = fed_zeros(args);
        assert_eq!(
            (code, stderr.as_str()),
            (Some(2), want.as_str()),
            "{args:?}"
        );
    }
    // The lines before an endless one are restored, as 1.31 restores them.
    let mut input = b"-A -t 10.0.0.1:80 -s rr\n".to_vec();
    input.extend(vec![b'x'; 2 << 20]);
    let out = Command::new(ipvsadm_rs())
        .arg0("ipvsadm-rs")
        .arg("-R")
        .env("IPVSADM_RS_MAX_INPUT", "1M")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = out;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(&input);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("ipvsadm-rs: line 2 of the rules {bound}: the restore stopped\n")
    );
    let saved = run_as(&ipvsadm_rs(), "ipvsadm", &["-Sn"], b"");
    assert_eq!(
        String::from_utf8_lossy(&saved.stdout),
        "-A -t 10.0.0.1:80 -s rr\n"
    );
    // A bound that does not read is refused, naming the variable.
    let out = Command::new(ipvsadm_rs())
        .arg0("ipvsadm-rs")
        .args(["--diff", "-"])
        .env("IPVSADM_RS_MAX_INPUT", "lots")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ipvsadm-rs: --diff -: IPVSADM_RS_MAX_INPUT=\"lots\": not a size in bytes (such as 268435456 or 256M)\n"
    );
}
