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
    // JSON that is not a table document of `-Ln --json`: nothing written.
    let json = ours(&["--apply", "-"], "{\"services\": []}\n");
    assert_eq!(json.code, Some(2), "{json}");
    assert_eq!(
        text(&json.stderr),
        "ipvsadm-rs: --apply -: no \"schema\": not a document of `ipvsadm-rs -Ln --json`\n"
    );
    assert_eq!(sorted(&ipvsadm_ok("-Sn")), sorted(&without_the_multicast));
}

/// Issue 34: `--diff` and `--apply` read the document `ipvsadm-rs -Ln
/// --json` prints. A table loaded with the real ipvsadm (thresholds
/// included, which `-Sn` leaves out) is saved as JSON and changed with
/// the real ipvsadm; `--diff FILE.json` names exactly the changes back,
/// `--apply FILE.json` restores it (the real `ipvsadm -Ln` and `-Ln
/// --thresholds` equal the saved ones); garbage JSON is refused with
/// exit 2 and a message, nothing written.
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn the_json_of_a_listing_is_a_table_to_diff_and_apply() {
    enter_fresh_netns().unwrap();
    for line in TABLE.lines() {
        ipvsadm_ok(line);
    }
    ipvsadm_ok("-e -t 10.97.97.97:80 -r 10.244.1.40:80 -m -w 1 -x 100 -y 10");
    let listing = ipvsadm_ok("-Ln");
    let thresholds = ipvsadm_ok("-Ln --thresholds");
    let saved = ours(&["-Ln", "--json"], "");
    assert_eq!(saved.code, Some(0), "{saved}");
    let dir = std::env::temp_dir().join("apply-json");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("table.json");
    std::fs::write(&file, &saved.stdout).unwrap();
    let file = file.to_str().unwrap();
    // Saved, the document diffs clean.
    let clean = ours(&["--diff", file], "");
    assert_eq!((clean.code, text(&clean.stdout)), (Some(0), ""), "{clean}");
    for change in [
        "-E -t 10.97.97.97:80 -s wrr",
        "-e -t 10.97.97.97:80 -r 10.244.1.40:80 -m -w 3",
        "-d -t 10.97.97.97:80 -r 10.244.1.39:80",
        "-D -u 10.0.0.1:53",
        "-A -t 10.9.9.9:80 -s rr",
    ] {
        ipvsadm_ok(change);
    }
    let changed = ipvsadm_ok("-Sn");
    // The changes back, as restore lines (the ones re-adding what was
    // deleted are the real ipvsadm's -Sn lines of TABLE).
    let diff = ours(&["--diff", file], "");
    assert_eq!(diff.code, Some(1), "{diff}");
    let writes: String = text(&diff.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        sorted(&writes),
        sorted(
            "-E -t 10.97.97.97:80 -s rr\n\
             -e -t 10.97.97.97:80 -r 10.244.1.40:80 -m -w 1 -x 100 -y 10\n\
             -a -t 10.97.97.97:80 -r 10.244.1.39:80 -m -w 1\n\
             -A -u 10.0.0.1:53 -s sh -b sh-fallback\n\
             -a -u 10.0.0.1:53 -r 10.0.0.53:53 -i -w 2 --tun-type gue --tun-port 6080 --tun-csum\n\
             -D -t 10.9.9.9:80\n"
        ),
        "{diff}"
    );
    // Garbage JSON, for --diff and --apply: exit 2, a message, nothing
    // written.
    let cut = dir.join("cut.json");
    std::fs::write(&cut, &saved.stdout[..saved.stdout.len() / 2]).unwrap();
    let heavy = dir.join("heavy.json");
    let weight = text(&saved.stdout).replacen("\"weight\": 7", "\"weight\": 70000", 1);
    assert_ne!(weight, text(&saved.stdout));
    std::fs::write(&heavy, weight).unwrap();
    let cut = cut.to_str().unwrap();
    let heavy = heavy.to_str().unwrap();
    for (cmd, bad, says) in [
        ("--diff", cut, "not valid JSON: EOF while parsing"),
        ("--apply", cut, "not valid JSON: EOF while parsing"),
        (
            "--apply",
            heavy,
            "services[2]: FWM 42 IPv6: real server [2001:db8::5]:0: weight 70000 is over 65535",
        ),
    ] {
        let refused = ours(&[cmd, bad], "");
        assert_eq!(refused.code, Some(2), "{refused}");
        assert!(refused.stdout.is_empty(), "{refused}");
        let said = text(&refused.stderr);
        assert!(
            said.starts_with(&format!("ipvsadm-rs: {cmd} {bad}: "))
                && said.contains(says)
                && said.lines().count() == 1,
            "{said}"
        );
        assert_eq!(ipvsadm_ok("-Sn"), changed);
    }
    // Applied, the table is the saved one: the real ipvsadm lists it as
    // it did, thresholds included.
    let applied = ours(&["--apply", file], "");
    assert_eq!(applied.code, Some(0), "{applied}");
    assert_eq!(ipvsadm_ok("-Ln"), listing);
    assert_eq!(ipvsadm_ok("-Ln --thresholds"), thresholds);
    let again = ours(&["--diff", file], "");
    assert_eq!((again.code, text(&again.stdout)), (Some(0), ""), "{again}");
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
