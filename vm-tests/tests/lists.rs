//! Every list form of ipvsadm 1.31 against `ipvsadm-rs`, on tables with
//! names, on tables that exercise the sort order, and on a director with
//! real traffic (see `vm_tests::lab`): --stats and --rate with non-zero
//! counters, -c with connections in several states and persistence
//! templates.
//!
//! Output that changes with time (rates, counters, connection expiry)
//! is compared honestly: the real ipvsadm runs, then ipvsadm-rs, then
//! the real ipvsadm again, and a case passes when ipvsadm-rs printed
//! exactly what one of the two real runs printed, or, because rows
//! change at their own moments, when each of its lines is that line of
//! one of the two real runs. Nothing is masked.
//! `-c` is also compared on frozen copies of /proc/net/ip_vs_conn.

use std::net::SocketAddr;
use std::path::Path;

use vm_tests::lab::{echo_once, run_with_proc, Lab};
use vm_tests::{diff, enter_fresh_netns, ipvsadm, ipvsadm_rs, run_as, Outcome};

/// /etc/hosts of the VM while these tests run: names for most of the
/// addresses below, some long enough to be cut at 33 and 28 characters,
/// a second line for 10.97.97.97 that must never be shown.
const HOSTS: &str = "127.0.0.1\tlocalhost\n\
::1\t\tlocalhost ip6-localhost ip6-loopback\n\
10.97.97.97\tvip-web.example vip-web\n\
10.97.97.98\tsticky.example\n\
10.244.1.39\treal1.example\n\
10.244.1.40\ta-very-long-real-server-name.cluster.example.internal\n\
10.0.1.2\tclient.example\n\
192.168.10.1\tfrontend-with-a-rather-long-hostname.example\n\
2001:db8::1\tsix-vip.example\n\
2001:db8::10\tsix-real.example\n\
10.97.97.97\tsecond-name-never-shown.example\n";

fn install_hosts() {
    std::fs::write("/etc/hosts", HOSTS).unwrap_or_else(|e| panic!("/etc/hosts: {e}"));
}

/// Services with names and without: long host names, named and unnamed
/// ports, every protocol, IPv6, fwmarks (whose ports never get names).
const NAMED: &[&str] = &[
    "-A -t 192.168.10.1:443 -s wlc -p 600 -M 255.255.255.0",
    "-a -t 192.168.10.1:443 -r 10.244.1.40:443 -m",
    "-a -t 192.168.10.1:443 -r 10.244.1.39:8443 -m -w 3 -x 50 -y 5",
    "-a -t 192.168.10.1:443 -r 10.244.2.33:443 -g",
    "-A -u 10.97.97.97:53 -s rr -o",
    "-a -u 10.97.97.97:53 -r 10.244.1.39:53 -m",
    "-a -u 10.97.97.97:53 -r 10.244.1.40:domain -m",
    "-A --sctp-service 10.97.97.97:5672 -s rr",
    "-a --sctp-service 10.97.97.97:5672 -r 10.244.2.33:5672 -m",
    "-A -t [2001:db8::1]:80 -s rr",
    "-a -t [2001:db8::1]:80 -r [2001:db8::10]:80 -m",
    "-a -t [2001:db8::1]:80 -r [2001:db8::11]:8080 -m",
    "-A -f 42 -s lc",
    "-a -f 42 -r 10.244.1.39:80 -g",
    "-A -f 4294967295 -s rr",
    "-A -t 10.0.1.2:8080 -s sh -b sh-port",
    "-a -t 10.0.1.2:8080 -r 10.244.1.40:8080 -i --tun-type gue --tun-port 6080 --tun-csum",
    "-a -t 10.0.1.2:8080 -r 10.244.1.39:8080 -i --tun-type gre",
    "-A -t 10.97.97.97:80 -s rr",
];

/// Services and destinations whose order shows the comparator quirk:
/// differences that overflow an int (192.168.x before 10.x, marks above
/// 2^31, ports), families and protocols mixed.
const SORT: &[&str] = &[
    "-A -t 10.0.0.1:80",
    "-A -t 192.168.0.1:80",
    "-A -t 172.16.0.1:80",
    "-A -t 255.255.255.254:80",
    "-A -t 1.2.3.4:80",
    "-A -t 128.0.0.1:80",
    "-A -t 127.255.255.255:80",
    "-A -u 10.0.0.1:80",
    "-A -t 10.0.0.1:65535",
    "-A -t 10.0.0.1:1",
    "-A -f 1",
    "-A -f 2147483648",
    "-A -f 4294967295",
    "-A -f 3 -6",
    "-A -t [::1]:80",
    "-A -t [ffff::1]:80",
    "-A -t [8000::]:80",
    "-A -u [2001:db8::1]:53",
    "-a -t 10.0.0.1:80 -r 10.0.0.2:80 -m",
    "-a -t 10.0.0.1:80 -r 200.0.0.1:80 -m",
    "-a -t 10.0.0.1:80 -r 127.0.0.1:80 -m",
    "-a -t 10.0.0.1:80 -r 128.0.0.0:80 -m",
    "-a -t 10.0.0.1:80 -r 255.0.0.0:80 -m",
    "-a -t 10.0.0.1:80 -r 1.1.1.1:1 -m",
    "-a -t 10.0.0.1:80 -r 1.1.1.1:65535 -m",
    "-a -t 10.0.0.1:80 -r 1.1.1.1:32768 -m",
    "-a -t [8000::]:80 -r [::2]:80 -m",
    "-a -t [8000::]:80 -r [f000::2]:80 -m",
    "-a -t [8000::]:80 -r [8000::2]:80 -m",
];

/// The director of the traffic tests: echo (nc), a server that never
/// closes, one that closes first, a port nobody listens on, a real
/// server that is not there, persistence, UDP and SIP persistence.
const LIVE: &[&str] = &[
    "-A -t 10.97.97.97:80 -s rr",
    "-a -t 10.97.97.97:80 -r 10.244.1.39:80 -m",
    "-a -t 10.97.97.97:80 -r 10.244.1.40:80 -m",
    "-a -t 10.97.97.97:80 -r 10.244.2.33:80 -m -w 2 -x 100 -y 10",
    "-A -t 10.97.97.97:7001 -s rr",
    "-a -t 10.97.97.97:7001 -r 10.244.1.39:7001 -m",
    "-A -t 10.97.97.97:7002 -s rr",
    "-a -t 10.97.97.97:7002 -r 10.244.1.40:7002 -m",
    "-A -t 10.97.97.97:9 -s rr",
    "-a -t 10.97.97.97:9 -r 10.244.2.33:9 -m",
    "-A -t 10.97.97.99:80 -s rr",
    "-a -t 10.97.97.99:80 -r 10.244.9.9:80 -m",
    "-A -t 10.97.97.98:80 -s wlc -p 600",
    "-a -t 10.97.97.98:80 -r 10.244.1.39:80 -m",
    "-a -t 10.97.97.98:80 -r 10.244.1.40:80 -m",
    "-A -u 10.97.97.97:53 -s rr",
    "-a -u 10.97.97.97:53 -r 10.244.1.39:53 -m",
    "-a -u 10.97.97.97:53 -r 10.244.2.33:53 -m",
    "-A -u 10.97.97.97:5060 -s rr -p 60 --pe sip",
    "-a -u 10.97.97.97:5060 -r 10.244.1.40:5060 -m",
    "-A -f 42 -s lc",
    "-a -f 42 -r 10.244.1.39:80 -m",
];

/// Every whole-table form of the list command.
const FORMS: &[&str] = &[
    "",
    "-L",
    "-l",
    "-Ln",
    "-L -n",
    "--list --numeric",
    "-L --stats",
    "-Ln --stats",
    "-Ln --stats --exact",
    "-Ln --stats -X",
    "-L --rate",
    "-Ln --rate",
    "-Ln --rate --exact",
    "-L --thresholds",
    "-Ln --thresholds",
    "-L --persistent-conn",
    "-Ln --persistent-conn",
    "-L --tun-info",
    "-Ln --tun-info",
    "-Ln --nosort",
    "-Ln --sort",
    "-Ln --stats --nosort",
    "-Ln --rate --nosort",
    "-Ln --thresholds --nosort",
    "-Ln --exact",
    "-Ln --stats --rate",
    "-Ln --thresholds --persistent-conn",
    "-Ln --tun-info --persistent-conn",
    "-S",
    "-Sn",
    "-Lc",
    "-Lnc",
    "-Lnc --persistent-conn",
    "-Lc --persistent-conn",
    "-L --connection --numeric --nosort",
    "-L --timeout",
    "-L --daemon",
];

/// One service (`-L -t/-u/--sctp-service/-f`) in these formats.
const ONE_FORMS: &[&str] = &[
    "",
    "-n",
    "--stats",
    "-n --stats",
    "-n --stats --exact",
    "-n --rate",
    "--rate",
    "-n --thresholds",
    "--persistent-conn",
    "-n --persistent-conn",
    "--tun-info",
    "-n --nosort",
];

/// The list command's option conflicts and illegal options.
const CONFLICTS: &[&str] = &[
    "-L -c --stats",
    "-L -c --rate",
    "-L -c --thresholds",
    "-L --timeout --rate",
    "-L --timeout --thresholds",
    "-L --daemon --stats",
    "-L --daemon --thresholds",
    "-L --timeout --persistent-conn",
    "-L --daemon --persistent-conn",
    "-L -c --timeout",
    "-L -c --daemon",
    "-L --daemon --timeout",
    "-L -c -t 10.97.97.97:80",
    "-L --timeout -t 10.97.97.97:80",
    "-L --daemon -f 42",
    "-L -t 10.97.97.97:80 -u 10.97.97.97:53",
    "-L -c --tun-info",
    "-L -c --exact",
    "-L -c --sort",
    "-L --timeout --exact",
    "-L --daemon --nosort",
    "-L --timeout -n",
    "-L -s rr",
    "-L -p",
    "-L -p 60",
    "-L -M 255.255.255.0",
    "-L -r 10.244.1.39",
    "-L -m",
    "-L -g",
    "-L -w 1",
    "-L -x 1",
    "-L -y 1",
    "-L -o",
    "-L --pe sip",
    "-L -b sh-port",
    "-L --tun-type gue",
    "-L --tun-port 6080",
    "-L --tun-csum",
    "-L --mcast-interface lo",
    "-L --syncid 1",
    "-L --mcast-group 239.1.1.1",
    "-L -c -c",
    "-L --stats --stats",
    "-L --exact --exact",
    "-L --tun-info --tun-info",
    "-L --nosort --nosort",
    "-L -6",
    "-L -t 10.97.97.97:80 -6",
    "-L -f 42 -6",
    "-L -f 0",
    "-L -t 10.0.0.99:80",
    "-L -u 10.97.97.97:80",
    "-L -t 10.97.97.97",
    "-L -t 10.97.97.97:http -n",
    "-L -u vip-web.example:domain -n",
    "-L -t vip-web:80",
    "-L -n -c -t",
    "-L --stats -S",
    "-S --stats",
    "-S -c",
    "-S --timeout",
    "-S -n --nosort",
    "-L -Z",
    "-Lc extra",
    "-L --rate extra",
];

fn words(cmd: &str) -> Vec<&str> {
    cmd.split_whitespace().collect()
}

fn apply(lines: &[&str]) {
    for line in lines {
        let out = run_as(&ipvsadm(), "ipvsadm", &words(line), b"");
        assert_eq!(out.code, Some(0), "setup `ipvsadm {line}` failed:\n{out}");
    }
}

fn mismatch(cmd: &str, theirs: &Outcome, ours: &Outcome) -> String {
    format!(
        "`ipvsadm {cmd}` differs (- ipvsadm, + ipvsadm-rs):\n{}",
        diff(&theirs.to_string(), &ours.to_string())
    )
}

/// Whether `ours` is what the real ipvsadm printed, line by line, at
/// one of two moments: every line of ours is the same line of `before`
/// or of `after` (all three with as many lines, the same exit code and
/// the same stderr). Rows change at their own moments (each connection's
/// expiry ticks on its own timer; the estimator rates services in turn),
/// so a listing taken between two others can mix rows of both.
fn same_lines(ours: &Outcome, before: &Outcome, after: &Outcome) -> bool {
    let lines = |o: &Outcome| String::from_utf8_lossy(&o.stdout).into_owned();
    let (o, b, a) = (lines(ours), lines(before), lines(after));
    let (o, b, a): (Vec<&str>, Vec<&str>, Vec<&str>) = (
        o.split_inclusive('\n').collect(),
        b.split_inclusive('\n').collect(),
        a.split_inclusive('\n').collect(),
    );
    ours.code == before.code
        && ours.code == after.code
        && ours.stderr == before.stderr
        && ours.stderr == after.stderr
        && o.len() == b.len()
        && o.len() == a.len()
        && o.iter()
            .zip(b.iter().zip(a.iter()))
            .all(|(o, (b, a))| o == b || o == a)
}

/// Runs `cmd` through the real ipvsadm, ipvsadm-rs, the real ipvsadm:
/// identical when ipvsadm-rs printed what one of the real runs printed,
/// or each of its lines as one of them printed it ([`same_lines`]).
///
/// A connection that appears or expires between the two real runs
/// changes the number of rows; the three runs are then taken again, up
/// to three times in all. A difference of ours persists across them.
fn compare(cmd: &str) -> Result<(), String> {
    let args = words(cmd);
    let mut last = String::new();
    for _ in 0..3 {
        let before = run_as(&ipvsadm(), "ipvsadm", &args, b"");
        let ours = run_as(&ipvsadm_rs(), "ipvsadm", &args, b"");
        if ours == before {
            return Ok(());
        }
        let after = run_as(&ipvsadm(), "ipvsadm", &args, b"");
        if ours == after || same_lines(&ours, &before, &after) {
            return Ok(());
        }
        last = mismatch(cmd, &before, &ours);
        if before.stdout.split(|b| *b == b'\n').count()
            == after.stdout.split(|b| *b == b'\n').count()
        {
            break;
        }
    }
    Err(last)
}

/// Every case of `cmds`, counted; returns the failures.
fn run_all(cmds: impl IntoIterator<Item = String>, count: &mut usize) -> Vec<String> {
    let mut failures = Vec::new();
    for cmd in cmds {
        *count += 1;
        if let Err(f) = compare(&cmd) {
            failures.push(f);
        }
    }
    failures
}

fn report(name: &str, failures: Vec<String>, total: usize) {
    println!(
        "{name}: {} of {total} cases identical",
        total - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The one-service selectors of a table.
fn one_service_cases(selectors: &[&str]) -> Vec<String> {
    let mut cases = Vec::new();
    for sel in selectors {
        for form in ONE_FORMS {
            cases.push(format!("-L {sel} {form}"));
        }
    }
    cases
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn named_tables_in_every_form() {
    install_hosts();
    let mut total = 0;
    let mut failures = Vec::new();
    enter_fresh_netns().unwrap();
    apply(NAMED);
    // Each name must show in the real ipvsadm's listing, or the cases
    // would not test names.
    let real = run_as(&ipvsadm(), "ipvsadm", &["-L"], b"");
    let text = String::from_utf8_lossy(&real.stdout);
    for shown in [
        "TCP  frontend-with-a-rather-long- wlc",
        "  -> a-very-long-real-server-nam",
        "real1.example:8443",
        "[six-vip.example]:http",
        "vip-web.example:domain",
        "FWM  -1",
        "client.example:http-alt",
        "10.244.2.33:amqp",
    ] {
        assert!(text.contains(shown), "{shown:?} not in:\n{text}");
    }
    failures.extend(run_all(FORMS.iter().map(|f| f.to_string()), &mut total));
    failures.extend(run_all(
        one_service_cases(&[
            "-t 192.168.10.1:443",
            "-t frontend-with-a-rather-long-hostname.example:https",
            "-u 10.97.97.97:domain",
            "--sctp-service 10.97.97.97:5672",
            "-t [2001:db8::1]:80",
            "-f 42",
            "-f 4294967295",
            "-t 10.0.1.2:8080",
        ]),
        &mut total,
    ));
    report("names", failures, total);
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn sort_order_in_every_form() {
    let mut total = 0;
    enter_fresh_netns().unwrap();
    apply(SORT);
    let forms = FORMS
        .iter()
        .filter(|f| !f.contains('c') || f.contains("--"))
        .map(|f| f.to_string());
    let failures = run_all(forms, &mut total);
    report("sort", failures, total);
}

fn vip(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The connections of the live tests, made from the client namespace.
fn make_traffic(lab: &mut Lab) {
    for _ in 0..12 {
        lab.client
            .run(|| echo_once(&vip("10.97.97.97:80")))
            .unwrap_or_else(|e| panic!("echo through 10.97.97.97:80: {e}"));
    }
    for _ in 0..3 {
        lab.tcp(vip("10.97.97.97:80"), |s| {
            use std::io::{Read, Write};
            let mut buf = [0u8; 5];
            s.write_all(b"ping\n").is_ok() && s.read_exact(&mut buf).is_ok()
        })
        .unwrap_or_else(|e| panic!("held connection: {e}"));
    }
    for _ in 0..2 {
        lab.tcp(vip("10.97.97.97:7001"), |s| {
            use std::io::Write;
            s.write_all(b"bye\n").is_ok() && s.shutdown(std::net::Shutdown::Write).is_ok()
        })
        .unwrap_or_else(|e| panic!("half-closed connection: {e}"));
        lab.tcp(vip("10.97.97.97:7002"), |_| true)
            .unwrap_or_else(|e| panic!("connection closed by the server: {e}"));
        let refused = lab.client.run(|| {
            std::net::TcpStream::connect_timeout(
                &vip("10.97.97.97:9"),
                std::time::Duration::from_secs(5),
            )
        });
        assert!(refused.is_err(), "port 9 of the real server answered");
    }
    lab.unanswered_syn(vip("10.97.97.99:80"));
    for _ in 0..4 {
        lab.client
            .run(|| echo_once(&vip("10.97.97.98:80")))
            .unwrap_or_else(|e| panic!("echo through the persistent service: {e}"));
    }
    lab.tcp(vip("10.97.97.98:80"), |_| true)
        .unwrap_or_else(|e| panic!("held persistent connection: {e}"));
    for _ in 0..6 {
        let echo = lab
            .udp(vip("10.97.97.97:53"), b"query")
            .unwrap_or_else(|e| panic!("UDP echo: {e}"));
        assert_eq!(echo, b"query");
    }
    let sip: &'static [u8] = b"OPTIONS sip:probe@10.97.97.97 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.1.2:5060;branch=z9hG4bK-1\r\n\
From: <sip:client@10.0.1.2>;tag=1\r\n\
To: <sip:probe@10.97.97.97>\r\n\
Call-ID: ipvs-rs-call-1@client.example\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";
    let echo = lab
        .udp(vip("10.97.97.97:5060"), sip)
        .unwrap_or_else(|e| panic!("SIP echo: {e}"));
    assert_eq!(echo, sip);
}

/// The connection table of the caller's namespace, read now.
fn conn_table() -> String {
    std::fs::read_to_string("/proc/thread-self/net/ip_vs_conn")
        .unwrap_or_else(|e| panic!("ip_vs_conn: {e}"))
}

/// The services of `listing` (`-Ln --stats` or `--rate`) whose first
/// number is 0, and those with traffic.
fn service_numbers(listing: &str) -> Vec<(String, u64)> {
    listing
        .lines()
        .filter(|l| l.starts_with("TCP ") || l.starts_with("UDP "))
        .map(|l| {
            let mut w = l.split_whitespace();
            let name = format!("{} {}", w.next().unwrap_or(""), w.next().unwrap_or(""));
            let sum = w.filter_map(|v| v.parse::<u64>().ok()).sum();
            (name, sum)
        })
        .collect()
}

/// Polls the real ipvsadm until the estimator (which folds the per-CPU
/// counters in, service after service, over its 2 s period) shows
/// counters for every service that had traffic and a rate for the
/// busiest; gives up after many polls, never on a clock.
fn wait_for_estimator() -> String {
    let mut last = String::new();
    for _ in 0..600 {
        let stats = run_as(&ipvsadm(), "ipvsadm", &["-Ln", "--stats"], b"");
        let rate = run_as(&ipvsadm(), "ipvsadm", &["-Ln", "--rate"], b"");
        let stats = String::from_utf8_lossy(&stats.stdout).into_owned();
        let rate = String::from_utf8_lossy(&rate.stdout).into_owned();
        let counted = service_numbers(&stats).iter().all(|(_, n)| *n > 0);
        let rated = service_numbers(&rate)
            .iter()
            .any(|(name, n)| name == "TCP 10.97.97.97:80" && *n > 0);
        if counted && rated {
            return stats;
        }
        last = format!("{stats}{rate}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the estimator never counted and rated the traffic:\n{last}");
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn live_traffic_in_every_form() {
    install_hosts();
    let mut lab = Lab::new(&["10.97.97.97", "10.97.97.98", "10.97.97.99"]);
    apply(LIVE);
    make_traffic(&mut lab);

    // What the cases must show: connection states, counters, rates.
    let conns = conn_table();
    for state in [
        "ESTABLISHED",
        "TIME_WAIT",
        "FIN_WAIT",
        "CLOSE_WAIT",
        "CLOSE ",
        "SYN_RECV",
        "UDP",
        "NONE",
    ] {
        assert!(conns.contains(state), "no {state} in:\n{conns}");
    }
    assert!(
        conns.contains(" sip "),
        "no SIP persistence data in:\n{conns}"
    );
    // The kernel folds its per-CPU counters in when the estimator runs.
    wait_for_estimator();

    // Shown in the log: what the cases below list.
    for args in [
        &["-Ln", "--stats"][..],
        &["-Ln", "--rate"][..],
        &["-Lnc"][..],
    ] {
        println!("{}", run_as(&ipvsadm(), "ipvsadm", args, b""));
    }
    let mut total = 0;
    let mut failures = run_all(FORMS.iter().map(|f| f.to_string()), &mut total);
    failures.extend(run_all(
        one_service_cases(&[
            "-t 10.97.97.97:80",
            "-t vip-web.example:http",
            "-t 10.97.97.97:7001",
            "-t 10.97.97.98:80",
            "-u 10.97.97.97:53",
            "-u vip-web:domain",
            "-u 10.97.97.97:5060",
            "-f 42",
        ]),
        &mut total,
    ));
    failures.extend(run_all(CONFLICTS.iter().map(|c| c.to_string()), &mut total));
    report("live", failures, total);
    drop(lab);
}

/// A row longer than ipvsadm's 255-byte `fgets` pieces, cut where the
/// rest reads as a row of its own (1.31 prints both).
fn long_row() -> String {
    let head = "UDP  0A000102 13C4 0A616161 13C4 0AF40128 13C4 NONE           6000 sip ";
    let tail = " TCP  0A000102 C355 0A616161 0050 0AF40127 0050 ESTABLISHED     777";
    format!("{head}{}{tail}", "x".repeat(255 - head.len()))
}

/// `-c` on frozen copies of the connection table: the live one, and
/// hand-made ones with the rows the kernel can write (IPv6, a mixed-
/// family destination, SCTP, persistence engine data, a long line).
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn frozen_connection_tables() {
    install_hosts();
    let mut lab = Lab::new(&["10.97.97.97", "10.97.97.98", "10.97.97.99"]);
    apply(LIVE);
    make_traffic(&mut lab);
    let live = conn_table();
    let header = live.lines().next().unwrap_or("").to_owned();
    let made = [
        format!(
            "{header}\n\
TCP  0A000102 C350 0A616161 0050 0AF40127 0050 ESTABLISHED     899\n\
UDP  0A000102 C351 0A616161 0035 0AF40128 0035 UDP             299\n\
TCP  0A000102 0000 0A616162 0000 0AF40127 0000 NONE            599\n\
SCTP 0A000102 C352 0A616161 1628 0AF40221 1628 ESTABLISHED       5\n\
TCP  2001:0db8:0000:0000:0000:0000:0000:0002 C353 2001:0db8:0000:0000:0000:0000:0000:0001 0050 2001:0db8:0000:0000:0000:0000:0000:0010 0050 FIN_WAIT        119\n\
TCP  0A000102 C354 0A616161 0050 2001:0db8:0000:0000:0000:0000:0000:0010 0050 SYN_RECV         59\n\
UDP  0A000102 13C4 0A616161 13C4 0AF40128 13C4 UDP             179 sip ipvs-rs-call-1@client.example\n\
{}\n\
TCP  C0A80A01 FFFF FFFFFFFF 0001 00000000 0000 CLOSE             0\n",
            long_row()
        ),
        format!("{header}\n"),
        format!("{header}\nTCP  0A000102 C350 0A616161 0050 0AF40127 0050 ESTABLISHED     899\n\nUDP  0A000102 C351 0A616161 0035 0AF40128 0035 UDP             299\n"),
        String::new(),
    ];
    let dir = Path::new("/tmp/frozen-proc");
    std::fs::create_dir_all(dir.join("net")).unwrap_or_else(|e| panic!("{e}"));
    let forms = [
        "-Lc",
        "-Lnc",
        "-Lnc --persistent-conn",
        "-Lc --persistent-conn",
        "-L -c -n --nosort",
        "-c -L",
        "--list --connection",
        "-Lnc --persistent-conn --nosort",
    ];
    let mut total = 0;
    let mut failures = Vec::new();
    for table in std::iter::once(&live).chain(made.iter()) {
        std::fs::write(dir.join("net/ip_vs_conn"), table).unwrap_or_else(|e| panic!("{e}"));
        for form in forms {
            total += 1;
            let args = words(form);
            let theirs = run_with_proc(&ipvsadm(), "ipvsadm", &args, dir);
            let ours = run_with_proc(&ipvsadm_rs(), "ipvsadm", &args, dir);
            if theirs != ours {
                failures.push(format!(
                    "on the table\n{table}\n{}",
                    mismatch(form, &theirs, &ours)
                ));
            }
        }
    }
    // The frozen live table has rows in several states, with names.
    let shown = run_with_proc(&ipvsadm(), "ipvsadm", &["-Lc"], dir);
    assert_eq!(
        shown.code,
        Some(1),
        "an empty table file is unexpected input"
    );
    std::fs::write(dir.join("net/ip_vs_conn"), &live).unwrap_or_else(|e| panic!("{e}"));
    let shown = run_with_proc(&ipvsadm(), "ipvsadm", &["-Lc"], dir);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("client.example:"), "{text}");
    assert!(text.contains("vip-web.example:http"), "{text}");
    report("frozen -c", failures, total);
    drop(lab);
}

/// A DNS server on 127.0.0.1:53 of the caller's namespace that answers
/// PTR queries from `names` (owner name, host name) and NXDOMAIN for the
/// rest, until the process ends.
fn fake_dns(names: &'static [(&'static str, &'static str)]) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:53").unwrap_or_else(|e| panic!("bind 53: {e}"));
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let query = &buf[..n];
            // The question's name: labels from offset 12.
            let mut labels = Vec::new();
            let mut pos = 12;
            while let Some(&len) = query.get(pos) {
                if len == 0 {
                    break;
                }
                let label = query.get(pos + 1..pos + 1 + len as usize).unwrap_or(b"");
                labels.push(String::from_utf8_lossy(label).into_owned());
                pos += 1 + len as usize;
            }
            let qname = labels.join(".");
            let end = (pos + 5).min(n);
            let host = names
                .iter()
                .find(|(owner, _)| owner.eq_ignore_ascii_case(&qname))
                .map(|(_, host)| *host);
            let reply = ipvsadm_rs::resolve::ptr_answer(&query[..end], host);
            let _ = sock.send_to(&reply, peer);
        }
    });
}

/// Names from DNS: nsswitch.conf says `files dns` and both tools ask
/// the same server (glibc's resolver for ipvsadm, ours for ipvsadm-rs);
/// then with no server at all, where both fall back to numbers at once.
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn names_from_dns() {
    install_hosts();
    let saved = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
    let with_dns: String = saved
        .lines()
        .map(|l| {
            if l.starts_with("hosts:") {
                "hosts: files dns"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    std::fs::write("/etc/nsswitch.conf", &with_dns).unwrap_or_else(|e| panic!("{e}"));
    let table: &[&str] = &[
        "-A -t 10.97.97.97:80 -s rr",
        "-a -t 10.97.97.97:80 -r 10.244.2.33:80 -m",
        "-a -t 10.97.97.97:80 -r 10.244.3.3:80 -m",
        "-a -t 10.97.97.97:80 -r 10.244.1.39:80 -m",
        "-A -t 10.244.7.7:443 -s rr",
        "-A -t [2001:db8::33]:80 -s rr",
        "-a -t [2001:db8::33]:80 -r [2001:db8::10]:80 -m",
        "-a -t [2001:db8::33]:80 -r [2001:db8::34]:80 -m",
    ];
    let forms = [
        "-L",
        "-L --stats",
        "-L --rate",
        "-L --thresholds",
        "-L --persistent-conn",
        "-L --tun-info",
        "-S",
        "-L -t 10.97.97.97:80",
        "-L -t [2001:db8::33]:80",
        "-L -t 10.244.7.7:https",
    ];
    let mut total = 0;
    let mut failures = Vec::new();

    enter_fresh_netns().unwrap();
    fake_dns(&[
        ("33.2.244.10.in-addr.arpa", "dns-real3.example"),
        (
            "7.7.244.10.in-addr.arpa",
            "a-dns-name-long-enough-to-be-cut.example",
        ),
        (
            "3.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
            "dns-six.example",
        ),
    ]);
    apply(table);
    let real = run_as(&ipvsadm(), "ipvsadm", &["-L"], b"");
    let text = String::from_utf8_lossy(&real.stdout);
    for shown in [
        "dns-real3.example:http",
        "[dns-six.example]:http",
        "10.244.3.3:http",
        "real1.example",
    ] {
        assert!(text.contains(shown), "{shown:?} not in:\n{text}");
    }
    failures.extend(run_all(forms.iter().map(|f| f.to_string()), &mut total));

    // No server: refused at once, the numbers show.
    enter_fresh_netns().unwrap();
    apply(table);
    failures.extend(run_all(forms.iter().map(|f| f.to_string()), &mut total));

    std::fs::write("/etc/nsswitch.conf", &saved).unwrap_or_else(|e| panic!("{e}"));
    report("dns names", failures, total);
}
