//! `--from-k8s` against the real kernel: successive kubectl dumps synced
//! offline next to services another tool created, checked with the real
//! ipvsadm.

use vm_tests::{diff, enter_fresh_netns, from_k8s, ipvsadm, ipvsadm_rs, k8s_state, run_as};

const SYNC_1: &str = include_str!("../../ipvs-k8s/tests/dumps/sync-1.json");
const SYNC_2: &str = include_str!("../../ipvs-k8s/tests/dumps/sync-2.json");

/// Services the real ipvsadm creates before any sync: one unrelated, one
/// on the address the dump's Service default/taken wants.
const FOREIGN: &str = "\
-A -t 10.96.99.99:80 -s wlc
-a -t 10.96.99.99:80 -r 10.9.9.9:80 -g -w 3
-A -u 10.0.0.53:53 -s sh
-a -u 10.0.0.53:53 -r 10.0.0.5:53 -m -w 2
";

/// After the first dump (with node address 192.168.49.2, node-a).
const TABLE_1: &str = include_str!("../../ipvs-k8s/tests/dumps/sync-1.table");

/// After the second dump: kube-dns lost a pod and gained one, web lost
/// its affinity and gained a pod, old was deleted and new created.
const TABLE_2: &str = include_str!("../../ipvs-k8s/tests/dumps/sync-2.table");

/// The second dump's plan: edits in place, only the difference.
const PLAN_2: &str = include_str!("../../ipvs-k8s/tests/dumps/sync-2.plan");

const CONFLICT: &str = "ipvsadm-rs: --from-k8s -: TCP 10.96.99.99:80 (default/taken:80) is held by a virtual service ipvsadm-rs did not create: left alone\n";

/// The sysctls `--from-k8s` checks, as IPVS mode wants them, so that it
/// warns about none (vm-tests/tests/k8s_node.rs tests the warnings).
fn sysctls_ok() {
    for file in [
        "net/ipv4/vs/conntrack",
        "net/ipv4/vs/expire_nodest_conn",
        "net/ipv4/vs/expire_quiescent_template",
        "net/ipv4/ip_forward",
    ] {
        std::fs::write(format!("/proc/sys/{file}"), "1").unwrap();
    }
}

fn ipvsadm_ok(line: &str) -> String {
    let args: Vec<&str> = line.split_whitespace().collect();
    let out = run_as(&ipvsadm(), "ipvsadm", &args, b"");
    assert_eq!(out.code, Some(0), "`ipvsadm {line}`:\n{out}");
    String::from_utf8(out.stdout).unwrap()
}

/// `ipvsadm -Sn` as a sorted list of lines: every line names its service,
/// so this is the whole table, independent of the listing order.
fn saved() -> String {
    sorted(&ipvsadm_ok("-Sn"))
}

fn sorted(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn assert_table(want: &str) {
    let want = sorted(want);
    let got = saved();
    assert!(got == want, "ipvsadm -Sn, sorted:\n{}", diff(&want, &got));
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn two_dumps_synced_next_to_foreign_services_then_nothing_to_do() {
    enter_fresh_netns().unwrap();
    sysctls_ok();
    let state = k8s_state("two-dumps");
    for line in FOREIGN.lines() {
        ipvsadm_ok(line);
    }

    // First dump: everything is new but default/taken, whose address a
    // foreign service holds: left alone, reported, exit 1.
    let first = from_k8s(SYNC_1, &state, &[]);
    assert_eq!(first.code, Some(1), "{first}");
    assert_eq!(text(&first.stdout), "");
    assert_eq!(text(&first.stderr), CONFLICT);
    assert_table(&format!("{TABLE_1}{FOREIGN}"));
    let owned = std::fs::read_to_string(&state).unwrap();
    assert_eq!(
        owned
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.splitn(3, ' ').take(2).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>(),
        vec![
            "tcp 10.96.0.10:53",
            "tcp 10.96.0.1:443",
            "tcp 10.96.10.10:80",
            "tcp 10.96.60.60:80",
            "tcp 192.168.49.2:30080",
            "udp 10.96.0.10:53",
        ]
    );

    // Second dump, by a new process (as after a restart): the plan is the
    // difference, and old (deleted from the cluster) goes.
    let dry = from_k8s(SYNC_2, &state, &["--dry-run"]);
    assert_eq!(dry.code, Some(1), "{dry}");
    assert_eq!(text(&dry.stdout), PLAN_2);
    assert_table(&format!("{TABLE_1}{FOREIGN}"));
    // The dry run's lines are what the real ipvsadm restores (checked in
    // a namespace of its own, on a thread of its own).
    let plan = dry.stdout.clone();
    let restored = std::thread::spawn(move || {
        enter_fresh_netns().unwrap();
        for line in format!("{TABLE_1}{FOREIGN}").lines() {
            ipvsadm_ok(line);
        }
        let restored = run_as(&ipvsadm(), "ipvsadm", &["-R"], &plan);
        assert_eq!(restored.code, Some(0), "{restored}");
        saved()
    })
    .join()
    .unwrap();
    assert_eq!(restored, sorted(&format!("{TABLE_2}{FOREIGN}")));
    let second = from_k8s(SYNC_2, &state, &[]);
    assert_eq!(second.code, Some(1), "{second}");
    assert_eq!(text(&second.stderr), CONFLICT);
    assert_table(&format!("{TABLE_2}{FOREIGN}"));
    let owned = std::fs::read_to_string(&state).unwrap();
    assert!(
        owned.contains(
            "tcp 10.96.70.70:8080 sched=rr flags=0x0 timeout=0 mask=255.255.255.255 pe=-\n"
        ),
        "{owned}"
    );
    // web lost its affinity: only the settings of the edit are recorded.
    assert!(
        owned.contains("tcp 10.96.10.10:80 sched=rr flags=0x0 timeout=0 "),
        "{owned}"
    );
    assert_eq!(owned.matches("tcp 10.96.10.10:80 ").count(), 1, "{owned}");
    assert!(!owned.contains("10.96.60.60"), "{owned}");

    // Third run: nothing to plan, nothing written, the state unchanged.
    let third = from_k8s(SYNC_2, &state, &["--dry-run"]);
    assert_eq!((third.code, text(&third.stdout)), (Some(1), ""), "{third}");
    let again = from_k8s(SYNC_2, &state, &[]);
    assert_eq!((again.code, text(&again.stdout)), (Some(1), ""), "{again}");
    assert_table(&format!("{TABLE_2}{FOREIGN}"));
    assert_eq!(std::fs::read_to_string(&state).unwrap(), owned);

    // Once the foreign service goes, default/taken gets its address.
    ipvsadm_ok("-D -t 10.96.99.99:80");
    let last = from_k8s(SYNC_2, &state, &[]);
    assert_eq!(last.code, Some(0), "{last}");
    assert_eq!(text(&last.stderr), "");
    assert_table(&format!(
        "{TABLE_2}-A -u 10.0.0.53:53 -s sh\n-a -u 10.0.0.53:53 -r 10.0.0.5:53 -m -w 2\n\
         -A -t 10.96.99.99:80 -s rr\n-a -t 10.96.99.99:80 -r 10.244.1.99:80 -m -w 1\n"
    ));
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn records_of_services_that_are_gone_are_dropped_and_failed_creations_never_recorded() {
    enter_fresh_netns().unwrap();
    sysctls_ok();
    let state = k8s_state("stale");
    // As after a crash between recording and creating: recorded, absent.
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    std::fs::write(&state, "tcp 10.1.1.1:80\n").unwrap();
    // A scheduler the kernel does not have: every creation fails, no real
    // server is sent to a service that does not exist, nothing recorded.
    let failed = from_k8s(SYNC_1, &state, &["-s", "nosuch"]);
    assert_eq!(failed.code, Some(1), "{failed}");
    assert_eq!(text(&failed.stdout), "");
    let errors = text(&failed.stderr);
    assert!(
        errors.starts_with("-A -t 10.96.0.1:443 -s nosuch: "),
        "{errors}"
    );
    assert!(!errors.contains("-a "), "{errors}");
    assert_eq!(ipvsadm_ok("-Sn"), "");
    let owned = std::fs::read_to_string(&state).unwrap();
    assert_eq!(
        owned.lines().filter(|l| !l.starts_with('#')).count(),
        0,
        "{owned}"
    );
    // The same dump with a real scheduler then creates everything.
    let ok = from_k8s(SYNC_1, &state, &[]);
    assert_eq!(ok.code, Some(0), "{ok}");
    assert_table(&format!(
        "{TABLE_1}-A -t 10.96.99.99:80 -s rr\n-a -t 10.96.99.99:80 -r 10.244.1.99:80 -m -w 1\n"
    ));
}

/// What the first dump adds to TABLE_1 when nothing holds 10.96.99.99.
const TAKEN: &str = "-A -t 10.96.99.99:80 -s rr\n-a -t 10.96.99.99:80 -r 10.244.1.99:80 -m -w 1\n";

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_service_another_tool_recreated_in_place_of_ours_is_left_alone_and_never_deleted() {
    enter_fresh_netns().unwrap();
    sysctls_ok();
    let state = k8s_state("recreated");
    let first = from_k8s(SYNC_1, &state, &[]);
    assert_eq!(first.code, Some(0), "{first}");
    // The operator deletes default/old's service and creates their own
    // at its address: another scheduler, another real server.
    ipvsadm_ok("-D -t 10.96.60.60:80");
    ipvsadm_ok("-A -t 10.96.60.60:80 -s wlc");
    ipvsadm_ok("-a -t 10.96.60.60:80 -r 10.9.9.60:80 -m -w 5");
    let theirs = "-A -t 10.96.60.60:80 -s wlc\n-a -t 10.96.60.60:80 -r 10.9.9.60:80 -m -w 5\n";
    let ours_then = TABLE_1.replace(
        "-A -t 10.96.60.60:80 -s rr\n-a -t 10.96.60.60:80 -r 10.244.2.60:80 -m -w 1\n",
        "",
    );
    // The same dump: the service is not rewritten, but reported.
    let second = from_k8s(SYNC_1, &state, &[]);
    assert_eq!(second.code, Some(1), "{second}");
    assert_eq!(
        text(&second.stderr),
        "ipvsadm-rs: --from-k8s -: TCP 10.96.60.60:80 no longer has the settings ipvsadm-rs last wrote (recreated or edited by another tool): left alone, no longer ipvsadm-rs's\n\
         ipvsadm-rs: --from-k8s -: TCP 10.96.60.60:80 (default/old:80) is held by a virtual service ipvsadm-rs did not create: left alone\n"
    );
    assert_table(&format!("{ours_then}{TAKEN}{theirs}"));
    let owned = std::fs::read_to_string(&state).unwrap();
    assert!(!owned.contains("10.96.60.60"), "{owned}");
    // A later dump without that Service does not delete it.
    let third = from_k8s(SYNC_2, &state, &[]);
    assert_eq!(third.code, Some(0), "{third}");
    assert_eq!(text(&third.stderr), "");
    assert_table(&format!("{TABLE_2}{TAKEN}{theirs}"));
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_state_file_listing_a_service_never_created_gives_no_ownership() {
    enter_fresh_netns().unwrap();
    sysctls_ok();
    let state = k8s_state("forged");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    ipvsadm_ok("-A -t 10.96.99.99:80 -s wlc");
    ipvsadm_ok("-a -t 10.96.99.99:80 -r 10.9.9.9:80 -g -w 3");
    let theirs = "-A -t 10.96.99.99:80 -s wlc\n-a -t 10.96.99.99:80 -r 10.9.9.9:80 -g -w 3\n";
    // Forged in format 2 with our usual settings, then in format 1.
    let header = "# ipvsadm-rs --from-k8s state, format 2: the virtual services it created and the settings it last wrote (do not edit while it runs)";
    for forged in [
        format!(
            "{header}\ntcp 10.96.99.99:80 sched=rr flags=0x0 timeout=0 mask=255.255.255.255 pe=-\n"
        ),
        "tcp 10.96.99.99:80\n".to_owned(),
    ] {
        std::fs::write(&state, forged).unwrap();
        let run = from_k8s(SYNC_2, &state, &[]);
        assert_eq!(run.code, Some(1), "{run}");
        let errors = text(&run.stderr);
        assert!(
            errors.starts_with(
                "ipvsadm-rs: --from-k8s -: TCP 10.96.99.99:80 no longer has the settings"
            ),
            "{errors}"
        );
        assert!(errors.contains("(default/taken:80) is held by"), "{errors}");
        assert_table(&format!("{TABLE_2}{theirs}"));
        // A dump without the Service leaves it too.
        let none = from_k8s(r#"{"kind":"List","items":[]}"#, &state, &[]);
        assert_eq!(none.code, Some(0), "{none}");
        assert_table(theirs);
        let owned = std::fs::read_to_string(&state).unwrap();
        assert!(!owned.contains("10.96.99.99"), "{owned}");
    }
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn bad_dumps_and_command_lines_change_nothing() {
    enter_fresh_netns().unwrap();
    sysctls_ok();
    let state = k8s_state("bad");
    ipvsadm_ok("-A -t 10.0.0.1:80 -s rr");
    let bad = from_k8s(
        r#"{"kind":"List","items":[{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"shop"},"spec":{"ports":[{"port":"80"}]}}]}"#,
        &state,
        &[],
    );
    assert_eq!(bad.code, Some(2), "{bad}");
    assert_eq!(
        text(&bad.stderr),
        "ipvsadm-rs: --from-k8s -: Service shop/web: invalid type: string \"80\", expected i32\n"
    );
    let usage = run_as(
        &ipvsadm_rs(),
        "ipvsadm-rs",
        &["--from-k8s", "-", "--node-ip", "nowhere"],
        b"",
    );
    assert_eq!(usage.code, Some(2), "{usage}");
    assert_eq!(
        text(&usage.stderr),
        "ipvsadm-rs: --node-ip nowhere: not an IP address\n"
    );
    assert_eq!(ipvsadm_ok("-Sn"), "-A -t 10.0.0.1:80 -s rr\n");
    assert!(!state.exists());
}

/// Issue 34: a state file cut at a line boundary, emptied, or cut inside
/// its header is never read as whole: the run reads the copy beside it
/// (`STATE.bak`), says so, and keeps its services (the second dump's
/// changes are made, nothing reported as another tool's); with the copy
/// cut too it refuses, saying what was lost, and changes nothing.
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_cut_or_empty_state_file_is_read_from_its_copy_or_refused() {
    let first = format!("{TABLE_1}{TAKEN}");
    let second = format!("{TABLE_2}{TAKEN}");
    type Cut = fn(&str) -> String;
    let cuts: [(&str, Cut); 4] = [
        ("empty", |_| String::new()),
        ("at a line boundary", |t| {
            let lines: Vec<&str> = t.lines().collect();
            lines[..lines.len() / 2].join("\n") + "\n"
        }),
        ("without its end line", |t| {
            let lines: Vec<&str> = t.lines().collect();
            lines[..lines.len() - 1].join("\n") + "\n"
        }),
        ("inside its header", |t| t[..70].to_owned()),
    ];
    for (name, cut) in cuts {
        enter_fresh_netns().unwrap();
        sysctls_ok();
        let state = k8s_state("cut");
        let copy = state.with_file_name("owned.bak");
        let run = from_k8s(SYNC_1, &state, &[]);
        assert_eq!(run.code, Some(0), "{run}");
        assert_table(&first);
        let whole = std::fs::read_to_string(&state).unwrap();
        assert_eq!(std::fs::read_to_string(&copy).unwrap(), whole);
        std::fs::write(&state, cut(&whole)).unwrap();
        let run = from_k8s(SYNC_2, &state, &[]);
        assert_eq!(run.code, Some(0), "{name}: {run}");
        let errors = text(&run.stderr);
        assert!(
            errors.starts_with(&format!(
                "ipvsadm-rs: --from-k8s -: warning: state file {} ",
                state.display()
            )) && errors.contains(&format!("read its copy {} instead", copy.display()))
                && errors.lines().count() == 1,
            "{name}: {errors}"
        );
        assert_table(&second);
        // Both cut: refused, nothing changed.
        std::fs::write(&state, cut(&whole)).unwrap();
        std::fs::write(&copy, "").unwrap();
        let run = from_k8s(SYNC_1, &state, &[]);
        assert_eq!(run.code, Some(2), "{name}: {run}");
        let errors = text(&run.stderr);
        assert!(
            errors.contains("which virtual services --from-k8s created is lost, so nothing was changed. To go on:"),
            "{name}: {errors}"
        );
        assert_table(&second);
    }
}
