//! The paper cuts of an operator's first hour (issue 23), on the real
//! kernel: under our own name (`ipvsadm-rs`) the new behaviour, under the
//! name `ipvsadm` 1.31's, compared with the real ipvsadm.

use serde_json::Value;
use vm_tests::{enter_fresh_netns, ipvsadm, ipvsadm_rs, run_as, Outcome};

fn ipvsadm_ok(line: &str) -> String {
    let args: Vec<&str> = line.split_whitespace().collect();
    let out = run_as(&ipvsadm(), "ipvsadm", &args, b"");
    assert_eq!(out.code, Some(0), "`ipvsadm {line}`:\n{out}");
    String::from_utf8(out.stdout).unwrap()
}

fn ours(args: &[&str]) -> Outcome {
    run_as(&ipvsadm_rs(), "ipvsadm-rs", args, b"")
}

/// The real ipvsadm and ours, both run as `ipvsadm`.
fn both_as_ipvsadm(args: &[&str]) -> (Outcome, Outcome) {
    (
        run_as(&ipvsadm(), "ipvsadm", args, b""),
        run_as(&ipvsadm_rs(), "ipvsadm", args, b""),
    )
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn version_under_each_name() {
    enter_fresh_netns().unwrap();
    for v in ["-v", "--version"] {
        let (real, as_ipvsadm) = both_as_ipvsadm(&[v]);
        assert_eq!(as_ipvsadm, real, "{v}");
        let mine = ours(&[v]);
        assert_eq!(mine.code, Some(0));
        let mine = text(&mine.stdout);
        assert!(mine.starts_with("ipvsadm-rs "), "{mine}");
        // The line of the ipvsadm it matches is the real one's.
        assert!(mine.ends_with(&format!("compatible with {}", text(&real.stdout))));
    }
    // `-V` is not 1.31's.
    let (real, as_ipvsadm) = both_as_ipvsadm(&["-V"]);
    assert_eq!(as_ipvsadm, real);
    assert_ne!(real.code, Some(0));
    assert_eq!(ours(&["-V"]).code, Some(0));
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn typos_under_each_name() {
    enter_fresh_netns().unwrap();
    for line in [&["-L", "--stat"][..], &["--lsit"], &["-Ln", "--numerci"]] {
        let (real, as_ipvsadm) = both_as_ipvsadm(line);
        assert_eq!(as_ipvsadm, real, "{line:?}");
        assert!(!text(&real.stderr).contains("did you mean"));
    }
    let mine = ours(&["-L", "--stat"]);
    let (real, _) = both_as_ipvsadm(&["-L", "--stat"]);
    assert_eq!(mine.code, real.code);
    assert_eq!(
        text(&mine.stderr),
        format!(
            "{}ipvsadm-rs: unknown option `--stat'; did you mean `--stats'?\n",
            text(&real.stderr)
        )
    );
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn one_real_server_is_listed_under_our_name_only() {
    enter_fresh_netns().unwrap();
    for line in [
        "-A -t 10.97.97.97:80 -s rr",
        "-a -t 10.97.97.97:80 -r 10.244.1.39:80 -m -w 2",
        "-a -t 10.97.97.97:80 -r 10.244.1.40:8080 -m -w 3",
        "-A -u 10.97.97.97:80 -s rr",
        "-a -u 10.97.97.97:80 -r 10.244.1.40:8080 -m -w 4",
    ] {
        ipvsadm_ok(line);
    }
    let one = ["-Ln", "-t", "10.97.97.97:80", "-r", "10.244.1.40:8080"];
    let (real, as_ipvsadm) = both_as_ipvsadm(&one);
    assert_eq!(as_ipvsadm, real);
    assert_eq!(
        text(&real.stderr),
        "Illegal 'real-server' option with the 'list' command\n"
    );
    // Ours: the real ipvsadm's listing of the service, that line alone.
    let whole = ipvsadm_ok("-Ln -t 10.97.97.97:80");
    let expected: String = whole
        .lines()
        .filter(|l| {
            !l.contains("->") || l.contains("RemoteAddress") || l.contains("10.244.1.40:8080")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let mine = ours(&one);
    assert_eq!(
        (mine.code, text(&mine.stdout)),
        (Some(0), expected.as_str()),
        "{mine}"
    );
    // By protocol: the UDP service's server of the same address.
    let udp = ours(&["-Ln", "-u", "10.97.97.97:80", "-r", "10.244.1.40:8080"]);
    assert_eq!(
        text(&udp.stdout),
        ipvsadm_ok("-Ln -u 10.97.97.97:80"),
        "{udp}"
    );
    let mut json_args = one.to_vec();
    json_args.push("--json");
    let doc = ours(&json_args);
    let v: Value = serde_json::from_slice(&doc.stdout).unwrap_or_else(|e| panic!("{e}: {doc}"));
    let dests = v["services"][0]["destinations"].as_array().unwrap();
    assert_eq!(dests.len(), 1);
    assert_eq!(
        (&dests[0]["address"], &dests[0]["port"], &dests[0]["weight"]),
        (
            &Value::from("10.244.1.40"),
            &Value::from(8080),
            &Value::from(3)
        )
    );
    let none = ours(&["-Ln", "-t", "10.97.97.97:80", "-r", "10.244.1.41:80"]);
    assert_eq!(
        (none.code, text(&none.stderr)),
        (Some(1), "No such destination\n")
    );
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn sysctls_are_what_proc_holds() {
    enter_fresh_netns().unwrap();
    // Opening IPVS once makes the namespace's sysctls.
    ipvsadm_ok("-Ln");
    let dir = std::path::Path::new("/proc/sys/net/ipv4/vs");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let doc = ours(&["--sysctls", "--json"]);
    assert_eq!(doc.code, Some(0), "{doc}");
    let v: Value = serde_json::from_slice(&doc.stdout).unwrap();
    let listed = v["sysctls"].as_array().unwrap();
    let listed_names: Vec<&str> = listed.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(listed_names, names);
    for s in listed {
        let name = s["name"].as_str().unwrap();
        // `cat` of the file, less its newline, is the text; unknown ones
        // (a newer kernel's) have no kind and their text as value.
        let cat = vm_tests::sh(&format!("cat /proc/sys/net/ipv4/vs/{name}"));
        assert_eq!(s["text"], cat.trim_end_matches('\n'), "{name}");
        if s["kind"].is_null() {
            assert_eq!(s["value"], s["text"], "{name}");
        }
    }
    let cpulist = names.iter().any(|n| n == "est_cpulist");
    assert_eq!(v["estimator"]["kthreads"], cpulist);
    // The first kernel the library claims for each sysctl, against this
    // kernel: those claimed for it are there, those of later ones are
    // not. Two kinds depend on the build, not the version: lblc/lblcr's
    // come with their scheduler's module, debug_level only with
    // CONFIG_IP_VS_DEBUG (Debian's kernels are built without it).
    let release = vm_tests::sh("uname -r");
    let version = |v: &str| -> Vec<u32> {
        v.split(['.', '-'])
            .take(3)
            .map_while(|n| n.parse().ok())
            .collect()
    };
    let running = version(release.trim());
    let wrong: Vec<String> = ipvs_netlink::sysctl::KNOWN
        .iter()
        .filter(|k| !k.name.starts_with("lblc") && k.name != "debug_level")
        .filter(|k| names.iter().any(|n| n == k.name) != (version(k.since) <= running))
        .map(|k| format!("{} (claimed since {})", k.name, k.since))
        .collect();
    assert!(wrong.is_empty(), "on {release}: {wrong:?}");
    // The size the real ipvsadm prints: "IP Virtual Server version 1.2.1 (size=4096)".
    let listing = ipvsadm_ok("-Ln");
    let size = listing
        .lines()
        .next()
        .and_then(|l| l.split("size=").nth(1))
        .and_then(|s| s.trim_end_matches(')').parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{listing}"));
    assert_eq!(v["conn_table_size"], size);
    // The text form has one line a sysctl, after its title.
    let listing = ours(&["--sysctls"]);
    let lines: Vec<&str> = text(&listing.stdout).lines().collect();
    for (line, name) in lines[1..].iter().zip(&names) {
        assert!(line.starts_with(&format!("{name} ")), "{line}");
    }
    // Compact: the same document on one line.
    let compact = ours(&["--sysctls", "--json=compact"]);
    assert_eq!(text(&compact.stdout).lines().count(), 1);
    let again: Value = serde_json::from_slice(&compact.stdout).unwrap();
    assert_eq!(again["sysctls"], v["sysctls"]);
}

/// Inside a user namespace of its own (`unshare -U`), the network
/// namespace belongs to the initial user namespace: the kernel refuses.
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn the_permission_message_under_each_name() {
    use std::os::unix::process::CommandExt;
    enter_fresh_netns().unwrap();
    let run = |tool: &std::path::PathBuf, argv0: &str| {
        let mut cmd = std::process::Command::new(tool);
        cmd.arg0(argv0).arg("-Ln");
        // SAFETY: between fork and exec the child calls unshare alone,
        // which allocates nothing and takes no pointer.
        unsafe {
            cmd.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let real = run(&ipvsadm(), "ipvsadm");
    assert_eq!(run(&ipvsadm_rs(), "ipvsadm"), real);
    assert!(real.1.contains("you must be root"), "{real:?}");
    let (code, mine) = run(&ipvsadm_rs(), "ipvsadm-rs");
    assert_eq!(code, Some(2));
    assert!(
        mine.contains(
            "needs CAP_NET_ADMIN in the user namespace that owns the network namespace net:["
        ),
        "{mine}"
    );
    assert!(mine.contains(", not the initial one"), "{mine}");
    assert!(!mine.contains("Are you sure"), "{mine}");
}
