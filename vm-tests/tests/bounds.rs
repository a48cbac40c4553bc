//! Endless input (`/dev/zero`) on every reader of ipvsadm-rs: `-R` streams
//! it in constant memory and refuses a line of more than 1024 words; the
//! readers of whole files stop at the bound (`IPVSADM_RS_MAX_INPUT`);
//! exit 2 and a message, instead of growing until the OOM killer ends the
//! process. Run with `VM_MEM=512` for the small node.

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
            "ipvsadm-rs: line 1 of the rules has more than 1024 words: the restore stopped\n"
                .to_owned(),
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
    input.extend(b"x ".repeat(2000));
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
        "ipvsadm-rs: line 2 of the rules has more than 1024 words: the restore stopped\n"
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

/// Runs `ipvsadm-rs ARGS < /dev/zero` with the default bounds: exit code,
/// stderr and the child's peak RSS in KiB (`ru_maxrss` from `wait4`).
// The child is reaped by wait4, which std's Child does not know of.
#[allow(clippy::zombie_processes)]
fn zeros_peak(args: &[&str]) -> (Option<i32>, String, i64) {
    let stderr = std::env::temp_dir().join("bounds-peak.err");
    let child = Command::new(ipvsadm_rs())
        .arg0("ipvsadm-rs")
        .args(args)
        .env_remove("IPVSADM_RS_MAX_INPUT")
        .stdin(Stdio::from(File::open("/dev/zero").unwrap()))
        .stdout(Stdio::null())
        .stderr(Stdio::from(File::create(&stderr).unwrap()))
        .spawn()
        .unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 writes both out-pointers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(got, pid);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let killed = libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status));
    assert_eq!(killed, None, "{args:?} was killed");
    let text = std::fs::read_to_string(&stderr).unwrap();
    (code, text, usage.ru_maxrss)
}

/// Issue 34: with the default bounds, every reader refuses /dev/zero with
/// exit 2 and is never killed; `-R`, `--diff` and `--apply` stream and
/// stay under 16 MiB, the dump readers under their bound and 8 MiB more.
/// The peak RSS of each case is printed (run with `--nocapture`).
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn endless_input_is_refused_in_bounded_memory() {
    enter_fresh_netns().unwrap();
    let state = k8s_state("bounds-peak");
    let state = state.to_str().unwrap();
    let k8s = ["--node-ip", "192.168.49.2", "--state", state];
    let bound = "is longer than 67108864 bytes (the bound is set by IPVSADM_RS_MAX_INPUT)";
    let streamed = 16 << 10;
    let whole = (64 << 10) + (8 << 10);
    let cases: Vec<(Vec<&str>, String, i64)> = vec![
        (
            vec!["-R"],
            "ipvsadm-rs: line 1 of the rules has more than 1024 words: the restore stopped\n"
                .to_owned(),
            streamed,
        ),
        (
            vec!["--diff", "-"],
            "ipvsadm-rs: --diff -: line 1: more than 1024 words\n".to_owned(),
            streamed,
        ),
        (
            vec!["--apply", "-"],
            "ipvsadm-rs: --apply -: line 1: more than 1024 words\n".to_owned(),
            streamed,
        ),
        (
            [&["--from-k8s", "-", "--dry-run"][..], &k8s].concat(),
            format!("ipvsadm-rs: --from-k8s -: the dump {bound}\n"),
            whole,
        ),
        (
            [&["--from-k8s", "/dev/zero", "--dry-run"][..], &k8s].concat(),
            format!("ipvsadm-rs: --from-k8s /dev/zero: the dump {bound}\n"),
            whole,
        ),
    ];
    let mut report = String::new();
    for (args, want, most) in cases {
        let (code, stderr, peak) = zeros_peak(&args);
        report.push_str(&format!(
            "{args:?} < /dev/zero: exit {code:?}, peak RSS {peak} KiB\n"
        ));
        assert_eq!(
            (code, stderr.as_str()),
            (Some(2), want.as_str()),
            "{args:?}"
        );
        assert!(
            peak < most,
            "{args:?}: peak RSS {peak} KiB, over {most} KiB"
        );
    }
    println!("{report}");
}
