//! `--apply` and `--diff` against the real kernel, checked with the real
//! ipvsadm.

use vm_tests::{enter_fresh_netns, ipvsadm, ipvsadm_rs, run_as, Outcome};

fn ipvsadm_ok(line: &str) -> String {
    let args: Vec<&str> = line.split_whitespace().collect();
    let out = run_as(&ipvsadm(), "ipvsadm", &args, b"");
    assert_eq!(out.code, Some(0), "`ipvsadm {line}`:\n{out}");
    String::from_utf8(out.stdout).unwrap()
}

fn ours(args: &[&str], stdin: &str) -> Outcome {
    run_as(&ipvsadm_rs(), "ipvsadm-rs", args, stdin.as_bytes())
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

const TABLE: &str = "\
-A -t 10.97.97.97:80 -s rr
-a -t 10.97.97.97:80 -r 10.244.1.39:80 -m -w 1
-a -t 10.97.97.97:80 -r 10.244.1.40:80 -m -w 1
-A -u 10.0.0.1:53 -s sh -b sh-fallback
-a -u 10.0.0.1:53 -r 10.0.0.53:53 -i -w 2 --tun-type gue --tun-port 6080 --tun-csum
-A -f 42 -6 -s wlc -p 300 -M 64
-a -f 42 -6 -r [2001:db8::5]:0 -g -w 7
";

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_saved_table_diffs_clean() {
    enter_fresh_netns().unwrap();
    let applied = ours(&["--apply", "-"], TABLE);
    assert_eq!(applied.code, Some(0), "{applied}");
    assert_eq!(ipvsadm_ok("-Sn"), TABLE);
    let saved = ipvsadm_ok("-Sn");
    let diff = ours(&["--diff", "-"], &saved);
    assert_eq!((diff.code, text(&diff.stdout)), (Some(0), ""), "{diff}");
    // Applying the same table again writes nothing.
    let again = ours(&["--apply", "-", "--dry-run"], TABLE);
    assert_eq!((again.code, text(&again.stdout)), (Some(0), ""));
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn the_plan_is_the_difference_edited_in_place() {
    enter_fresh_netns().unwrap();
    for line in TABLE.lines() {
        ipvsadm_ok(line);
    }
    ipvsadm_ok("-A -t 10.9.9.9:80 -s rr");
    let wanted = TABLE
        .replace("-A -t 10.97.97.97:80 -s rr", "-A -t 10.97.97.97:80 -s wrr")
        .replace(
            "10.244.1.40:80 -m -w 1",
            "10.244.1.40:80 -m -w 5 -x 100 -y 10",
        )
        + "-a -t 10.97.97.97:80 -r 10.244.2.33:80 -m -w 1\n";
    let dry = ours(&["--apply", "-", "--dry-run"], &wanted);
    assert_eq!(
        text(&dry.stdout),
        "-E -t 10.97.97.97:80 -s wrr\n\
         -e -t 10.97.97.97:80 -r 10.244.1.40:80 -m -w 5 -x 100 -y 10\n\
         -a -t 10.97.97.97:80 -r 10.244.2.33:80 -m -w 1\n\
         -D -t 10.9.9.9:80\n"
    );
    // --diff: the same lines, each edit after what the kernel has.
    let diff = ours(&["--diff", "-"], &wanted);
    assert_eq!(
        (diff.code, text(&diff.stdout)),
        (
            Some(1),
            "# was: -E -t 10.97.97.97:80 -s rr\n\
             -E -t 10.97.97.97:80 -s wrr\n\
             # was: -e -t 10.97.97.97:80 -r 10.244.1.40:80 -m -w 1\n\
             -e -t 10.97.97.97:80 -r 10.244.1.40:80 -m -w 5 -x 100 -y 10\n\
             -a -t 10.97.97.97:80 -r 10.244.2.33:80 -m -w 1\n\
             # was: -A -t 10.9.9.9:80 -s rr (with 0 real servers)\n\
             -D -t 10.9.9.9:80\n"
        )
    );
    let uncommented: String = text(&diff.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(uncommented, text(&dry.stdout));
    // The dry run's lines are what ipvsadm -R applies.
    let mut with_ipvsadm = String::new();
    {
        enter_fresh_netns().unwrap();
        for line in TABLE.lines() {
            ipvsadm_ok(line);
        }
        ipvsadm_ok("-A -t 10.9.9.9:80 -s rr");
        let restored = run_as(&ipvsadm(), "ipvsadm", &["-R"], &dry.stdout);
        assert_eq!(restored.code, Some(0), "{restored}");
        with_ipvsadm.push_str(&ipvsadm_ok("-Ln --thresholds"));
        with_ipvsadm.push_str(&ipvsadm_ok("-Sn"));
    }
    enter_fresh_netns().unwrap();
    for line in TABLE.lines() {
        ipvsadm_ok(line);
    }
    ipvsadm_ok("-A -t 10.9.9.9:80 -s rr");
    let applied = ours(&["--apply", "-"], &wanted);
    assert_eq!(applied.code, Some(0), "{applied}");
    let mut with_apply = ipvsadm_ok("-Ln --thresholds");
    with_apply.push_str(&ipvsadm_ok("-Sn"));
    assert_eq!(with_apply, with_ipvsadm);
    let clean = ours(&["--diff", "-"], &wanted);
    assert_eq!(clean.code, Some(0), "{clean}");
}

/// 1.31's `-S` leaves thresholds out; under the name `ipvsadm` ours
/// does too, byte for byte, and `--apply`/`--diff` leave a threshold the
/// file does not give as the kernel has it, so save then diff is clean.
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn save_then_diff_keeps_thresholds() {
    enter_fresh_netns().unwrap();
    for line in TABLE.lines() {
        ipvsadm_ok(line);
    }
    ipvsadm_ok("-e -t 10.97.97.97:80 -r 10.244.1.40:80 -m -w 1 -x 100 -y 10");
    let real = ipvsadm_ok("-Sn");
    let as_ipvsadm = run_as(&ipvsadm_rs(), "ipvsadm", &["-Sn"], b"");
    assert_eq!(text(&as_ipvsadm.stdout), real);
    assert!(!real.contains("-x 100"), "{real}");
    let saved = ours(&["-Sn"], "");
    assert_eq!(text(&saved.stdout), real);
    let diff = ours(&["--diff", "-"], text(&saved.stdout));
    assert_eq!((diff.code, text(&diff.stdout)), (Some(0), ""), "{diff}");
    let before = ipvsadm_ok("-Ln --thresholds");
    let set = format!("{:<10} {:<10}", 100, 10);
    assert!(before.contains(&set), "{before}");
    let applied = ours(&["--apply", "-"], text(&saved.stdout));
    assert_eq!(applied.code, Some(0), "{applied}");
    assert_eq!(ipvsadm_ok("-Ln --thresholds"), before);
    // Said in the file, a threshold is set: `-x 0` clears it.
    let cleared = real.replace("10.244.1.40:80 -m -w 1", "10.244.1.40:80 -m -w 1 -x 0 -y 0");
    let applied = ours(&["--apply", "-"], &cleared);
    assert_eq!(applied.code, Some(0), "{applied}");
    assert!(!ipvsadm_ok("-Ln --thresholds").contains(&set));
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn bad_files_are_refused_before_any_write() {
    enter_fresh_netns().unwrap();
    let bad = ours(&["--apply", "-"], "-A -t 10.0.0.1:80 -s rr\n-C\n");
    assert_eq!(bad.code, Some(2));
    assert_eq!(
        text(&bad.stderr),
        "ipvsadm-rs: --apply -: line 2: only -A and -a lines describe a table\n"
    );
    assert_eq!(ipvsadm_ok("-Sn"), "");
    let missing = ours(&["--apply", "/nonexistent"], "");
    assert_eq!(missing.code, Some(2));
    assert!(text(&missing.stderr)
        .starts_with("ipvsadm-rs: --apply /nonexistent: cannot open /nonexistent:"));
}

fn sorted(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Issue 34: a scheduler the kernel does not offer in the middle of the
/// file; `--apply` made every other change. Now what went through is
/// undone and the table is the old one (the real ipvsadm reads it back);
/// `--keep-going` keeps the other changes, as before; a JSON file is said
/// to be one.
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_failed_write_puts_back_what_apply_wrote() {
    enter_fresh_netns().unwrap();
    for line in [
        "-A -t 10.0.0.1:80 -s rr",
        "-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1",
        "-A -t 10.0.0.2:80 -s wlc",
        "-A -t 10.0.0.9:80 -s rr",
        "-a -t 10.0.0.9:80 -r 10.1.0.9:80 -m -w 2",
    ] {
        ipvsadm_ok(line);
    }
    let before = sorted(&ipvsadm_ok("-Sn"));
    let file = "\
-A -t 10.0.0.1:80 -s wlc
-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 5
-a -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 1
-A -t 10.0.0.2:80 -s rr
-A -t 10.0.0.3:80 -s rr
-a -t 10.0.0.3:80 -r 224.1.1.1:80 -m -w 1
";
    // The kernel refuses a real server whose address is neither unicast
    // nor local (EINVAL), which the parser does not check, as 1.31's.
    let applied = ours(&["--apply", "-"], file);
    assert_eq!(applied.code, Some(1), "{applied}");
    let said = text(&applied.stderr);
    assert!(
        said.starts_with("-a -t 10.0.0.3:80 -r 224.1.1.1:80 -m -w 1: "),
        "{said}"
    );
    assert!(
        said.ends_with(
            "went through were undone: the table is the old one (--keep-going keeps them)\n"
        ),
        "{said}"
    );
    assert_eq!(sorted(&ipvsadm_ok("-Sn")), before);
    // --keep-going: every other change is made.
    let kept = ours(&["--apply", "-", "--keep-going"], file);
    assert_eq!(kept.code, Some(1), "{kept}");
    assert!(!text(&kept.stderr).contains("undone"), "{kept}");
    let without_the_multicast: String = file
        .lines()
        .filter(|l| !l.contains("224.1.1.1"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(sorted(&ipvsadm_ok("-Sn")), sorted(&without_the_multicast));
    // A JSON file is not restore lines: nothing written.
    let json = ours(&["--apply", "-"], "{\"services\": []}\n");
    assert_eq!(json.code, Some(2), "{json}");
    assert_eq!(
        text(&json.stderr),
        "ipvsadm-rs: --apply -: a JSON document, not restore lines: --apply and --diff read the lines `ipvsadm-rs -Sn` prints\n"
    );
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn a_scheduler_the_kernel_lacks_is_named_before_any_write() {
    use ipvs_netlink::scheduler::{availability, Availability, KNOWN};
    enter_fresh_netns().unwrap();
    // The library's answer against the kernel's: the real ipvsadm adds a
    // service with each scheduler (the kernel loads the module or fails).
    for (i, name) in KNOWN.iter().chain(&["nosuch"]).enumerate() {
        let said = availability(name);
        assert_ne!(
            said,
            Availability::Unknown,
            "{name}: the VM has /lib/modules"
        );
        let vip = format!("10.9.9.{}:80", i + 1);
        let added = run_as(&ipvsadm(), "ipvsadm", &["-A", "-t", &vip, "-s", name], b"");
        assert_eq!(
            said.may_work(),
            added.code == Some(0),
            "{name}: the library says {said:?}, the kernel:\n{added}"
        );
    }
    ipvsadm_ok("-C");
    ipvsadm_ok("-A -t 10.0.0.2:80 -s rr");
    let before = ipvsadm_ok("-Sn");
    let file = "-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.2:80 -s nosuch\n";
    let note = "ipvsadm-rs: --diff -: -E -t 10.0.0.2:80 -s nosuch: this kernel offers no scheduler nosuch (no module ip_vs_nosuch: see `modinfo ip_vs_nosuch`)\n";
    let diff = ours(&["--diff", "-"], file);
    assert_eq!((diff.code, text(&diff.stderr)), (Some(1), note), "{diff}");
    let dry = ours(&["--apply", "-", "--dry-run"], file);
    assert_eq!(dry.code, Some(1), "{dry}");
    let applied = ours(&["--apply", "-"], file);
    assert_eq!(
        (applied.code, text(&applied.stderr)),
        (
            Some(1),
            format!(
                "{}ipvsadm-rs: --apply -: nothing was written: the table is the old one (--keep-going writes the rest)\n",
                note.replace("--diff", "--apply")
            )
            .as_str()
        ),
        "{applied}"
    );
    assert_eq!(ipvsadm_ok("-Sn"), before);
}
