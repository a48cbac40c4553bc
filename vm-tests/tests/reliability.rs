//! A kernel that says no, on the real 6.1 kernel: a user without
//! CAP_NET_ADMIN, schedulers and persistence engines whose module is
//! missing, IPVS absent with module autoload refused (both tools must give
//! the same stdout, stderr and exit code), and a netlink socket whose
//! receive buffer overflows (ENOBUFS) under the handle.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use ipvs_netlink::{Error, Handle, Service, ServiceId};
use vm_tests::{diff, enter_fresh_netns, ipvsadm, ipvsadm_rs, small_netlink_socket, Outcome};

/// The unprivileged user (`nobody`).
const NOBODY: u32 = 65534;

/// Runs `tool` as `ipvsadm` with `args`, as `uid`/`gid` when given.
fn outcome(tool: &std::path::Path, args: &[&str], uid: Option<u32>) -> Outcome {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(tool);
    cmd.arg0("ipvsadm").args(args);
    if let Some(id) = uid {
        // std drops the supplementary groups when it changes the user.
        cmd.uid(id).gid(id);
    }
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    Outcome {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// Runs `tool` as [`outcome`] does, in a fresh network namespace of its
/// own (so that what one tool changes cannot meet the other).
fn outcome_alone(tool: &std::path::Path, args: &[&str], uid: Option<u32>) -> Outcome {
    let tool = tool.to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    std::thread::spawn(move || {
        enter_fresh_netns().expect("fresh network namespace");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        outcome(&tool, &args, uid)
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Runs every command line through both tools, each in a fresh network
/// namespace when `alone`, else both in the caller's; returns the
/// mismatches and prints what each gave.
fn compare(cases: &[&str], uid: Option<u32>, alone: bool) -> Vec<String> {
    let (real, ours) = (ipvsadm(), ipvsadm_rs());
    let run = if alone { outcome_alone } else { outcome };
    let mut bad = Vec::new();
    for case in cases {
        let args: Vec<&str> = case.split_whitespace().collect();
        let want = run(&real, &args, uid);
        let got = run(&ours, &args, uid);
        eprintln!("ipvsadm {case}: {want}");
        if want != got {
            bad.push(format!(
                "`{case}` (uid {uid:?}):\n{}exit {:?} (ipvsadm) vs {:?} (ipvsadm-rs)\n",
                diff(
                    &format!(
                        "{}{}",
                        String::from_utf8_lossy(&want.stdout),
                        String::from_utf8_lossy(&want.stderr)
                    ),
                    &format!(
                        "{}{}",
                        String::from_utf8_lossy(&got.stdout),
                        String::from_utf8_lossy(&got.stderr)
                    ),
                ),
                want.code,
                got.code
            ));
        }
    }
    bad
}

fn assert_none(bad: Vec<String>) {
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// What unprivileged and refused cases run: reads, writes, the restore
/// and the command-line errors that come before the kernel is asked.
const CASES: &[&str] = &[
    "",
    "-Ln",
    "-L",
    "-Sn",
    "-L --timeout",
    "-L --daemon",
    "-L -n -t 10.0.0.1:80",
    "-A -t 10.0.0.1:80 -s rr",
    "-a -t 10.0.0.1:80 -r 10.0.0.2 -m",
    "-E -t 10.0.0.1:80 -s wrr",
    "-D -t 10.0.0.1:80",
    "-C",
    "-Z",
    "--set 10 10 10",
    "--start-daemon master --mcast-interface lo",
    "-Q",
    "-h",
    "-v",
];

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_user_without_cap_net_admin_gets_ipvsadms_answers() {
    enter_fresh_netns().expect("fresh network namespace");
    // Something to list, in case a read were allowed.
    let setup = outcome(&ipvsadm(), &["-A", "-t", "10.0.0.1:80", "-s", "rr"], None);
    assert_eq!(setup.code, Some(0), "{setup}");
    let bad = compare(CASES, Some(NOBODY), false);
    // Nothing was changed by the refused writes.
    let after = outcome(&ipvsadm(), &["-Ln"], None);
    assert!(
        String::from_utf8_lossy(&after.stdout).contains("TCP  10.0.0.1:80 rr"),
        "{after}"
    );
    assert_none(bad);
}

/// Sets the kernel's module loader (`/proc/sys/kernel/modprobe`).
fn set_modprobe(path: &str) {
    std::fs::write("/proc/sys/kernel/modprobe", format!("{path}\n"))
        .expect("write /proc/sys/kernel/modprobe");
}

const MODPROBE: &str = "/sbin/modprobe";
const MODPROBE_SAVED: &str = "/sbin/modprobe.saved";

/// Module loading refused for the duration of a test, restored on drop
/// (also when the test fails): the kernel's autoload (request_module)
/// runs a loader that fails, and so does `/sbin/modprobe`, which both
/// tools run themselves when IPVS is missing.
struct NoAutoload;

impl NoAutoload {
    fn new() -> Self {
        set_modprobe("/bin/false");
        std::fs::rename(MODPROBE, MODPROBE_SAVED).expect("move modprobe aside");
        std::fs::write(MODPROBE, "#!/bin/sh\nexit 1\n").expect("write a failing modprobe");
        std::fs::set_permissions(
            MODPROBE,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        NoAutoload
    }
}

impl Drop for NoAutoload {
    fn drop(&mut self) {
        let _ = std::fs::rename(MODPROBE_SAVED, MODPROBE);
        set_modprobe(MODPROBE);
    }
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn missing_scheduler_and_engine_modules() {
    // The SIP engine may have been loaded on demand by an earlier test.
    let _ = std::process::Command::new("rmmod")
        .arg("ip_vs_pe_sip")
        .status();
    assert!(
        !loaded_ipvs_modules().iter().any(|m| m == "ip_vs_pe_sip"),
        "ip_vs_pe_sip still loaded"
    );
    let _refused = NoAutoload::new();
    assert_none(compare(
        &[
            // No such module at all.
            "-A -t 10.0.0.1:80 -s nosuch",
            // A scheduler of later kernels (6.3's `twos`): no module here.
            "-A -t 10.0.0.1:80 -s twos",
            // The SIP engine's module is shipped but not loaded, and the
            // loader refuses to load it.
            "-A -u 10.0.0.1:5060 -s rr -p 60 --pe sip",
            "-A -u 10.0.0.1:5060 -s rr -p 60 --pe nosuch",
        ],
        None,
        true,
    ));
}

/// The IPVS modules loaded now, users first (so that each can be removed
/// in order).
fn loaded_ipvs_modules() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/modules").expect("/proc/modules");
    let mut mods: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|m| m.starts_with("ip_vs"))
        .map(str::to_owned)
        .collect();
    // ip_vs itself last: the schedulers, engines and helpers use it.
    mods.sort_by_key(|m| m == "ip_vs");
    mods
}

fn run_ok(cmd: &str, args: &[&str]) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// IPVS unloaded for the duration of a test; reloaded on drop.
struct Unloaded {
    modules: Vec<String>,
}

impl Drop for Unloaded {
    fn drop(&mut self) {
        for m in self.modules.iter().rev() {
            run_ok("modprobe", &[m]);
        }
    }
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn ipvs_absent_with_autoload_refused() {
    let modules = loaded_ipvs_modules();
    assert!(modules.iter().any(|m| m == "ip_vs"), "{modules:?}");
    let unloaded = Unloaded {
        modules: modules.clone(),
    };
    let refused = NoAutoload::new();
    for m in &modules {
        run_ok("rmmod", &[m]);
    }
    assert!(loaded_ipvs_modules().is_empty());
    // The handle's own word for it.
    match Handle::new() {
        Err(Error::NotAvailable) => {}
        other => panic!("Handle::new without IPVS: {other:?}"),
    }
    let bad = compare(CASES, None, true);
    let ours = outcome(&ipvsadm_rs(), &["-Ln"], None);
    drop(refused);
    drop(unloaded);
    assert_none(bad);
    // The plain message and exit 2.
    assert_eq!(ours.code, Some(2), "{ours}");
    assert!(ours.stdout.is_empty(), "{ours}");
    // IPVS is back for the tests that follow.
    enter_fresh_netns().expect("fresh network namespace");
    Handle::new().expect("IPVS reloaded");
}

// ---------------------------------------------------------------------------
// ENOBUFS

/// `IPVS_CMD_GET_INFO` with sequence number `seq`, as bytes.
fn get_info_request(family: u16, seq: u32, port: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&20u32.to_ne_bytes());
    b.extend_from_slice(&family.to_ne_bytes());
    b.extend_from_slice(&1u16.to_ne_bytes()); // NLM_F_REQUEST
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&port.to_ne_bytes());
    b.extend_from_slice(&[15, 1, 0, 0]); // GET_INFO, version 1
    b
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn enobufs_from_unread_replies_is_reported_and_the_next_call_works() {
    enter_fresh_netns().expect("fresh network namespace");
    let (fd, port) = small_netlink_socket();
    // SAFETY: dup of a descriptor we own; the copy is owned below.
    let flood = unsafe { OwnedFd::from_raw_fd(libc::dup(std::os::fd::AsRawFd::as_raw_fd(&fd))) };
    let mut h = Handle::from_socket(fd, port, Duration::from_secs(2)).expect("handle");
    // More requests than the buffer holds replies for, none read: the
    // kernel drops replies and flags the socket with ENOBUFS. Sequence
    // number 1 (the family lookup's): stale to the handle.
    let request = get_info_request(h.family_id(), 1, port);
    for _ in 0..256 {
        // SAFETY: sending a valid buffer on an open descriptor.
        let n = unsafe {
            libc::send(
                std::os::fd::AsRawFd::as_raw_fd(&flood),
                request.as_ptr().cast(),
                request.len(),
                0,
            )
        };
        assert_eq!(n, request.len() as isize);
    }
    let first = h.info();
    eprintln!("after the flood: {first:?}");
    match &first {
        Err(e @ Error::Io { .. }) => assert_eq!(e.errno(), Some(libc::ENOBUFS), "{e:?}"),
        other => panic!("expected ENOBUFS, got {other:?}"),
    }
    // The handle discarded the replies still queued: the next request
    // gets its own reply at once (before, it was dropped too and the
    // call timed out).
    let info = h.info().expect("the first call after ENOBUFS");
    assert_eq!(info.version_triple(), (1, 2, 1));
    let id = ServiceId::tcp("10.0.0.1:80".parse().expect("addr"));
    h.add_service(&Service::new(id, "rr"))
        .expect("a write after recovery");
    assert_eq!(h.services().expect("a dump after recovery").len(), 1);
}
