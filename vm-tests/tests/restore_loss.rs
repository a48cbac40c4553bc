//! A restore whose error replies do not fit the netlink receive buffer,
//! on the real 6.1 kernel.
//!
//! The kernel runs every request of a datagram before `sendmsg` returns
//! and answers each failing one; once the socket's receive buffer is
//! full it drops every later reply and flags the socket with ENOBUFS. A
//! pipelined restore then does not know what became of the lines whose
//! replies were dropped.
//!
//! - With `net.core.rmem_default`, `rmem_max`, `wmem_default` and
//!   `wmem_max` at a few KiB (too small for the error replies of one
//!   batch, and for its datagram), `ipvsadm-rs -R` raises its own
//!   buffers and behaves exactly as ipvsadm.
//! - On a socket whose buffer is forced to its minimum (the library's
//!   restore over `Handle::from_socket`), replies are really lost: the
//!   report must name every line in flight as applied or not applied,
//!   agreeing with ipvsadm run line by line, and with the table.

use std::collections::BTreeMap;
use std::time::Duration;

use ipvs_netlink::{Handle, MIN_RECEIVE_BUFFER, MIN_SEND_BUFFER};
use ipvsadm_rs::commands;
use ipvsadm_rs::io::{Flow, Out};
use vm_tests::{enter_fresh_netns, ipvsadm, ipvsadm_rs, run, run_as, small_netlink_socket};

/// How many services the rules set up.
const SERVICES: usize = 30;

/// The lines that go out as one batch: per service an add, a real server
/// added, a real server added to a service that does not exist
/// (rejected: no such service) and, for every fifth, the service added
/// again with another scheduler (rejected: it exists). 96 lines, 36 of
/// them rejected.
fn batch_lines() -> Vec<String> {
    let mut lines = Vec::new();
    for i in 0..SERVICES {
        lines.push(format!("-A -t 10.0.{i}.1:80 -s rr"));
        lines.push(format!("-a -t 10.0.{i}.1:80 -r 10.1.{i}.1:80 -m -w 2"));
        lines.push(format!("-a -t 10.9.{i}.1:80 -r 10.1.{i}.2:80 -m"));
        if i % 5 == 4 {
            lines.push(format!("-A -t 10.0.{i}.1:80 -s wlc"));
        }
    }
    lines
}

/// The whole input: the batch, then a listing (which sends the batch
/// first) and one more write.
fn rules() -> String {
    let mut text = batch_lines().join("\n");
    text.push_str("\n-L -n\n-A -t 10.5.5.5:80 -s rr\n");
    text
}

/// Runs `f` on a thread of its own in a fresh network namespace.
fn in_fresh_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        enter_fresh_netns().expect("fresh network namespace");
        f()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The real ipvsadm's `-Sn` of the caller's namespace.
fn saved_table() -> String {
    let out = run(&ipvsadm(), ["-Sn"]);
    assert!(out.status.success(), "ipvsadm -Sn failed");
    String::from_utf8(out.stdout).expect("text")
}

/// ipvsadm run once per line of `lines` in a fresh namespace (what `-R`
/// does, line by line): whether each line succeeded, and the table after.
fn oracle(lines: Vec<String>) -> (Vec<bool>, String) {
    in_fresh_netns(move || {
        let applied = lines
            .iter()
            .map(|line| run(&ipvsadm(), line.split_whitespace()).status.success())
            .collect();
        (applied, saved_table())
    })
}

/// Restores a sysctl on drop.
struct Sysctl {
    path: String,
    old: String,
}

impl Sysctl {
    fn set(name: &str, value: &str) -> Self {
        let path = format!("/proc/sys/{name}");
        let old = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        std::fs::write(&path, value).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
        Sysctl { path, old }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.path, self.old.trim());
    }
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_restore_under_a_tiny_rmem_default_matches_ipvsadm() {
    // Room for about three error replies (the batch has 36), and a
    // datagram of about 40 requests (the batch has 96).
    let _sysctls: Vec<Sysctl> = ["rmem_max", "rmem_default", "wmem_max", "wmem_default"]
        .iter()
        .map(|name| Sysctl::set(&format!("net/core/{name}"), "4608"))
        .collect();
    let input = rules();
    let run_tool = |tool: std::path::PathBuf| {
        let input = input.clone();
        in_fresh_netns(move || {
            let outcome = run_as(&tool, "ipvsadm", &["-R"], input.as_bytes());
            (outcome, saved_table())
        })
    };
    let (want, want_table) = run_tool(ipvsadm());
    let (got, got_table) = run_tool(ipvsadm_rs());
    eprintln!("ipvsadm -R: {want}");
    let stderr = String::from_utf8_lossy(&want.stderr);
    assert_eq!(stderr.lines().count(), 36, "one message per rejected line");
    assert_eq!(got, want, "ipvsadm-rs -R differs from ipvsadm -R");
    assert_eq!(got_table, want_table);
    assert!(got_table.contains("-A -t 10.5.5.5:80 -s rr"));

    // The library's own handle asks for enough room past the maxima.
    let (receive, send) = in_fresh_netns(|| {
        let h = Handle::new().expect("handle");
        (
            socket_option(&h, libc::SO_RCVBUF),
            socket_option(&h, libc::SO_SNDBUF),
        )
    });
    eprintln!("handle buffers under rmem_max and wmem_max 4608: receive {receive}, send {send}");
    assert!(receive >= MIN_RECEIVE_BUFFER, "{receive}");
    assert!(send >= MIN_SEND_BUFFER, "{send}");
}

/// An integer socket option of the handle's socket.
fn socket_option(h: &Handle, name: libc::c_int) -> usize {
    let mut size: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into an int of the length given, on the
    // handle's open descriptor.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(h),
            libc::SOL_SOCKET,
            name,
            (&mut size as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockopt: {}", std::io::Error::last_os_error());
    usize::try_from(size).expect("a size")
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_restore_that_loses_replies_names_each_lines_fate() {
    let lines = batch_lines();
    let (applied, oracle_table) = oracle(lines.clone());
    assert_eq!(applied.iter().filter(|a| !**a).count(), 36);

    let input = rules();
    let (flow, out, err, table) = in_fresh_netns(move || {
        let (fd, port) = small_netlink_socket();
        let mut handle = Handle::from_socket(fd, port, Duration::from_secs(10)).expect("handle");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut reader = input.as_bytes();
        let mut io = Out {
            input: &mut reader,
            out: &mut out,
            err: &mut err,
            json: false,
        };
        let flow = commands::process(&mut handle, "ipvsadm", &["-R".to_owned()], false, &mut io);
        (
            flow,
            String::from_utf8(out).expect("text"),
            String::from_utf8(err).expect("text"),
            saved_table(),
        )
    });
    eprintln!("restore: {flow:?}\n--- stdout\n{out}--- stderr\n{err}--- table\n{table}");

    assert_eq!(flow, Flow::Exit(1));
    assert!(out.is_empty(), "the listing after the batch must not run");
    assert!(err.contains("were lost (receive buffer overflow)"), "{err}");
    let last = lines.len();
    assert!(
        err.contains(&format!("the restore stopped after line {last}\n")),
        "{err}"
    );
    // One fate per line in flight.
    let mut fates = BTreeMap::new();
    for line in err.lines() {
        let Some(rest) = line.strip_prefix("line ") else {
            continue;
        };
        let (number, fate) = rest.split_once(": ").expect("line N: fate");
        let number: usize = number.parse().expect("a line number");
        assert!(
            fates.insert(number, fate.to_owned()).is_none(),
            "line {number} twice"
        );
    }
    assert_eq!(
        fates.keys().copied().collect::<Vec<_>>(),
        (1..=last).collect::<Vec<_>>()
    );
    let (mut known, mut from_table, mut wrong) = (0, 0, Vec::new());
    for (number, fate) in &fates {
        let want = applied[number - 1];
        let said = if fate.starts_with("applied") {
            true
        } else if fate.starts_with("not applied") {
            false
        } else {
            wrong.push(format!("line {number}: {fate}"));
            continue;
        };
        if fate.contains("reply lost") {
            from_table += 1;
        } else {
            known += 1;
        }
        if said != want {
            wrong.push(format!(
                "line {number} ({}): {fate}, ipvsadm {}",
                lines[number - 1],
                if want { "applied it" } else { "refused it" }
            ));
        }
    }
    eprintln!(
        "{} lines in flight: {} applied, {} not applied; {known} known from replies, {from_table} from the table",
        fates.len(),
        applied.iter().filter(|a| **a).count(),
        applied.iter().filter(|a| !**a).count()
    );
    assert!(wrong.is_empty(), "wrong fates:\n{}", wrong.join("\n"));
    assert!(known > 0, "some replies arrive");
    assert!(from_table > 0, "some replies are lost");
    // The table is what ipvsadm made of the same lines.
    assert_eq!(table, oracle_table);
}
