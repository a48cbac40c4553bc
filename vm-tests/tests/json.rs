//! `--json` on the real kernel: the documents hold what the kernel holds.

use serde_json::Value;
use vm_tests::{enter_fresh_netns, ipvsadm, ipvsadm_rs, run_as};

fn setup(lines: &[&str]) {
    for line in lines {
        let args: Vec<&str> = line.split_whitespace().collect();
        let out = run_as(&ipvsadm(), "ipvsadm", &args, b"");
        assert_eq!(out.code, Some(0), "`ipvsadm {line}`:\n{out}");
    }
}

fn json(args: &[&str]) -> Value {
    let out = run_as(&ipvsadm_rs(), "ipvsadm-rs", args, b"");
    assert_eq!(out.code, Some(0), "{out}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"))
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn every_list_form_is_one_json_document() {
    enter_fresh_netns().unwrap();
    setup(&[
        "-A -t 10.97.97.97:80 -s rr",
        "-a -t 10.97.97.97:80 -r 10.244.1.39:80 -m -w 2 -x 50 -y 5",
        "-a -t 10.97.97.97:80 -r 10.244.1.40:80 -i --tun-type gue --tun-port 6080 --tun-csum",
        "-A -f 4294967295 -6 -s sh -b sh-port -p 60 -M 64",
        "-A -u 10.0.0.1:5060 -s rr -p 30 --pe sip -o",
        "--set 901 121 301",
    ]);
    for args in [
        &["-Ln", "--json"][..],
        &["--json"][..],
        &["-L", "--json", "--stats"][..],
    ] {
        let doc = json(args);
        assert_eq!(doc["schema"], "ipvsadm-rs/v2");
        assert_eq!(doc["ipvs_version"], "1.2.1");
        assert_eq!(doc["conn_table_size"], 4096);
        let services = doc["services"].as_array().unwrap();
        assert_eq!(services.len(), 3);
        // ipvsadm's order: mark 4294967295 is -1 to its comparator, so it
        // comes first; then 10.97.97.97 (TCP) and 10.0.0.1 (UDP).
        let (fwm, tcp, udp) = (&services[0], &services[1], &services[2]);
        assert_eq!(tcp["address"], "10.97.97.97");
        assert_eq!(tcp["protocol"], "tcp");
        let dests = tcp["destinations"].as_array().unwrap();
        assert_eq!(dests[0]["address"], "10.244.1.39");
        assert_eq!(dests[0]["weight"], 2);
        assert_eq!(dests[0]["upper_threshold"], 50);
        assert_eq!(dests[0]["lower_threshold"], 5);
        assert_eq!(dests[0]["forward"], "masquerade");
        assert_eq!(dests[1]["forward"], "tunnel");
        assert_eq!(dests[1]["tunnel"]["type"], "gue");
        assert_eq!(dests[1]["tunnel"]["port"], 6080);
        assert_eq!(dests[1]["tunnel"]["flags"], serde_json::json!(["csum"]));
        assert!(dests[0]["stats"]["conns"].is_u64());
        assert_eq!(udp["persistence_engine"], "sip");
        assert_eq!(
            udp["flags"],
            serde_json::json!(["persistent", "hashed", "one-packet"])
        );
        assert_eq!(fwm["fwmark"], 4294967295u64);
        assert_eq!(fwm["family"], "inet6");
        assert_eq!(fwm["netmask"], "64");
        assert_eq!(
            fwm["flags"],
            serde_json::json!(["persistent", "hashed", "sh-port"])
        );
    }
    let one = json(&["-L", "-t", "10.97.97.97:80", "--json"]);
    assert!(one.get("ipvs_version").is_none());
    assert_eq!(one["services"].as_array().unwrap().len(), 1);
    let t = json(&["-L", "--timeout", "--json"]);
    assert_eq!(
        t["timeouts"],
        serde_json::json!({"tcp": 901, "tcp_fin": 121, "udp": 301})
    );
    let d = json(&["-L", "--daemon", "--json"]);
    assert_eq!(d["daemons"], serde_json::json!([]));
    let c = json(&["-Lc", "--json"]);
    assert_eq!(c["connections"], serde_json::json!([]));
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn json_is_refused_where_there_is_nothing_to_list() {
    enter_fresh_netns().unwrap();
    let out = run_as(
        &ipvsadm_rs(),
        "ipvsadm-rs",
        &["-A", "-t", "10.0.0.1:80", "--json"],
        b"",
    );
    assert_eq!(out.code, Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--json goes with the list commands"));
    let missing = run_as(
        &ipvsadm_rs(),
        "ipvsadm-rs",
        &["-L", "-t", "10.0.0.9:80", "--json"],
        b"",
    );
    assert_eq!(
        (missing.code, missing.stderr),
        (Some(1), b"No such service\n".to_vec())
    );
}

/// The member names of one table of `docs/json-schema.md` (the rows under
/// the line `` `heading`: ``), or of its `Stats` list.
fn documented_members(heading: &str) -> Vec<String> {
    let doc = include_str!("../../docs/json-schema.md");
    let at = doc
        .find(&format!("`{heading}`"))
        .unwrap_or_else(|| panic!("docs/json-schema.md has no `{heading}`"));
    let rest = &doc[at..];
    let mut members = Vec::new();
    if heading == "Stats" {
        // `Stats` (all numbers, ...): `conns`, `in_packets`, ... .
        let list = &rest[..rest.find("\n\n").unwrap_or(rest.len())];
        let list = &list[list.find(':').expect("a Stats list") + 1..];
        for name in list.split('`').skip(1).step_by(2) {
            members.push(name.to_owned());
        }
        return members;
    }
    for line in rest.lines().skip(1) {
        if line.is_empty() && !members.is_empty() {
            break;
        }
        let Some(first) = line.strip_prefix("| `") else {
            continue;
        };
        // `upper_threshold`, `lower_threshold` share a row.
        let cell = &first[..first.find(" |").expect("a table row")];
        for name in format!("`{cell}").split('`').skip(1).step_by(2) {
            members.push(name.to_owned());
        }
    }
    members
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn keys(v: &Value) -> Vec<String> {
    sorted(v.as_object().expect("an object").keys().cloned().collect())
}

/// The right-aligned columns of one listing line, named by the header
/// line of its kind: the last N tokens of the line are the last N columns
/// of the header, after the address column (a fwmark service's name has
/// spaces in it: `FWM  42 IPv6`).
fn columns<'a>(header: &'a str, line: &'a str) -> Vec<(&'a str, &'a str)> {
    let names: Vec<&str> = header.split_whitespace().collect();
    let after = names
        .iter()
        .position(|n| n.ends_with("Address:Port"))
        .expect("an address column")
        + 1;
    let names = &names[after..];
    let tokens: Vec<&str> = line.split_whitespace().collect();
    assert!(tokens.len() > names.len(), "`{line}` under `{header}`");
    names
        .iter()
        .copied()
        .zip(tokens[tokens.len() - names.len()..].iter().copied())
        .collect()
}

/// A real ipvsadm listing: its header lines and, per service, the service
/// line and its destination lines, in ipvsadm's order.
struct Listing {
    first: String,
    service_header: String,
    dest_header: String,
    services: Vec<(String, Vec<String>)>,
}

fn real_listing(args: &[&str]) -> Listing {
    let out = run_as(&ipvsadm(), "ipvsadm", args, b"");
    assert_eq!(out.code, Some(0), "`ipvsadm {args:?}`:\n{out}");
    let text = String::from_utf8(out.stdout).expect("ipvsadm prints text");
    let mut lines = text.lines();
    let mut next = || lines.next().expect("a header line").to_owned();
    let (first, service_header, dest_header) = (next(), next(), next());
    let mut services: Vec<(String, Vec<String>)> = Vec::new();
    for line in lines {
        if line.trim_start().starts_with("->") {
            services
                .last_mut()
                .expect("a service before its destinations")
                .1
                .push(line.to_owned());
        } else {
            services.push((line.to_owned(), Vec::new()));
        }
    }
    Listing {
        first,
        service_header,
        dest_header,
        services,
    }
}

/// The JSON value of a listing column, and its place in the document.
fn member(column: &str) -> &'static [&'static str] {
    match column {
        "Forward" => &["forward"],
        "Weight" => &["weight"],
        "ActiveConn" => &["active_conns"],
        "InActConn" => &["inactive_conns"],
        "PersistConn" => &["persistent_conns"],
        "Uthreshold" => &["upper_threshold"],
        "Lthreshold" => &["lower_threshold"],
        "Conns" => &["stats", "conns"],
        "InPkts" => &["stats", "in_packets"],
        "OutPkts" => &["stats", "out_packets"],
        "InBytes" => &["stats", "in_bytes"],
        "OutBytes" => &["stats", "out_bytes"],
        other => panic!("no JSON member for ipvsadm's column {other}"),
    }
}

/// Checks every column of `line` against the JSON object `obj`.
fn same_columns(header: &str, line: &str, obj: &Value) {
    for (name, text) in columns(header, line) {
        let mut v = obj;
        for key in member(name) {
            v = &v[key];
        }
        let want = match name {
            // ipvsadm's names of the forwarding methods.
            "Forward" => Value::from(match text {
                "Masq" => "masquerade",
                "Local" => "local",
                "Tunnel" => "tunnel",
                "Route" => "route",
                other => panic!("forward {other}"),
            }),
            _ => Value::from(
                text.parse::<u64>()
                    .unwrap_or_else(|e| panic!("{name} {text}: {e}")),
            ),
        };
        assert_eq!(v, &want, "{name} of `{line}` in {obj:#}");
    }
}

/// `host:port` of a listing line, as the document writes it.
fn address(svc_or_dest: &Value) -> String {
    let addr = svc_or_dest["address"].as_str().expect("an address");
    let port = &svc_or_dest["port"];
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// The outside truth for `--json`: the real ipvsadm 1.31's listings of the
/// same table (with counters from real traffic), field by field, and the
/// members documented in docs/json-schema.md, name by name.
#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn the_document_holds_what_the_real_ipvsadm_lists() {
    enter_fresh_netns().unwrap();
    let lab = vm_tests::Lab::new();
    setup(&[
        "-A -t 10.2.0.1:80 -s rr",
        "-a -t 10.2.0.1:80 -r 10.1.0.2:8080 -m -w 2 -x 50 -y 5",
        "-a -t 10.2.0.1:80 -r 10.1.0.2:8081 -m -w 0",
        "-A -t 10.97.97.97:80 -s wlc",
        "-a -t 10.97.97.97:80 -r 10.244.1.40:80 -i --tun-type gue --tun-port 6080 --tun-csum",
        "-a -t 10.97.97.97:80 -r [2001:db8::8]:80 -i",
        "-a -t 10.97.97.97:80 -r 10.244.1.41:80 -g -w 7",
        "-A -f 42 -6 -s sh -p 60 -M 64",
        "-a -f 42 -6 -r [2001:db8::10]:0 -g",
        "-A -u 10.0.0.1:5060 -s rr -p 30 --pe sip -o",
        "-A -t 10.0.0.2:443 -s lc -p 600 -M 255.255.255.0",
    ]);
    // Weight 2 and 0: every connection goes to 8080.
    for _ in 0..3 {
        lab.connect("10.2.0.1:80");
    }
    // The kernel reports the counters its estimator last copied (every
    // 2 s): wait until they hold the 3 connections, then one more tick,
    // so that no copy happens between the listings compared below.
    let web_conns = |doc: &Value| {
        doc["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["address"] == "10.2.0.1")
            .map(|s| s["stats"]["conns"].clone())
    };
    for _ in 0..100 {
        if web_conns(&json(&["-Ln", "--json"])) == Some(Value::from(3)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let doc = json(&["-Ln", "--json"]);

    // Every member the schema documents, and no other.
    let services = doc["services"].as_array().unwrap();
    for svc in services {
        assert_eq!(keys(svc), sorted(documented_members("Service")));
        assert_eq!(keys(&svc["stats"]), sorted(documented_members("Stats")));
        for d in svc["destinations"].as_array().unwrap() {
            assert_eq!(keys(d), sorted(documented_members("Destination")));
            assert_eq!(keys(&d["stats"]), sorted(documented_members("Stats")));
        }
    }

    // -Ln: the version line, the services with their flags, the
    // destinations with forward, weight and connection counts.
    let plain = real_listing(&["-Ln"]);
    assert_eq!(
        plain.first,
        format!(
            "IP Virtual Server version {} (size={})",
            doc["ipvs_version"].as_str().unwrap(),
            doc["conn_table_size"]
        )
    );
    assert_eq!(plain.services.len(), services.len());
    for ((line, dests), svc) in plain.services.iter().zip(services) {
        let mut tokens = line.split_whitespace();
        let prot = tokens.next().unwrap();
        if prot == "FWM" {
            assert_eq!(
                Value::from(tokens.next().unwrap().parse::<u64>().unwrap()),
                svc["fwmark"]
            );
            assert!(
                svc["protocol"].is_null() && svc["address"].is_null(),
                "{svc:#}"
            );
        } else {
            assert_eq!(prot.to_lowercase(), svc["protocol"], "{line}");
            assert_eq!(tokens.next().unwrap(), address(svc), "{line}");
        }
        let mut family = "inet";
        let mut sched = tokens.next().unwrap();
        if sched == "IPv6" {
            family = "inet6";
            sched = tokens.next().unwrap();
        } else if !svc["address"].as_str().unwrap_or("").is_empty() {
            family = if svc["address"].as_str().unwrap().contains(':') {
                "inet6"
            } else {
                "inet"
            };
        }
        assert_eq!(svc["family"], family, "{line}");
        assert_eq!(svc["scheduler"], sched, "{line}");
        let flags: Vec<&str> = svc["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        let (mut persistent, mut ops, mut pe) = (false, false, Value::Null);
        while let Some(word) = tokens.next() {
            match word {
                "persistent" => {
                    persistent = true;
                    let timeout: u64 = tokens.next().unwrap().parse().unwrap();
                    assert_eq!(svc["timeout"], timeout, "{line}");
                }
                "mask" => assert_eq!(svc["netmask"], tokens.next().unwrap(), "{line}"),
                "pe" => pe = Value::from(tokens.next().unwrap()),
                "ops" => ops = true,
                other => panic!("`{other}` in `{line}`"),
            }
        }
        assert_eq!(flags.contains(&"persistent"), persistent, "{line}");
        assert_eq!(flags.contains(&"one-packet"), ops, "{line}");
        assert_eq!(svc["persistence_engine"], pe, "{line}");
        if !persistent {
            // ipvsadm prints no mask then; the kernel keeps the full one.
            let full = if family == "inet" {
                "255.255.255.255"
            } else {
                "128"
            };
            assert_eq!(svc["netmask"], full, "{line}");
        }
        let json_dests = svc["destinations"].as_array().unwrap();
        assert_eq!(dests.len(), json_dests.len(), "{line}");
        for (dline, d) in dests.iter().zip(json_dests) {
            assert_eq!(dline.split_whitespace().nth(1).unwrap(), address(d));
            same_columns(&plain.dest_header, dline, d);
        }
    }

    // --stats --exact: the 64-bit counters of services and destinations;
    // --thresholds and --persistent-conn: the rest of the destination
    // columns. (--rate is left out: the kernel's estimator changes the
    // rates every 2 s, between two listings.)
    for args in [
        &["-Ln", "--stats", "--exact"][..],
        &["-Ln", "--thresholds"][..],
        &["-Ln", "--persistent-conn"][..],
    ] {
        let listing = real_listing(args);
        assert_eq!(listing.services.len(), services.len(), "{args:?}");
        for ((line, dests), svc) in listing.services.iter().zip(services) {
            if args.contains(&"--stats") {
                same_columns(&listing.service_header, line, svc);
            }
            for (dline, d) in dests.iter().zip(svc["destinations"].as_array().unwrap()) {
                same_columns(&listing.dest_header, dline, d);
            }
        }
    }
    // The traffic is in the counters compared above.
    let web = services
        .iter()
        .find(|s| s["address"] == "10.2.0.1")
        .expect("the service with traffic");
    assert_eq!(web["stats"]["conns"], 3, "{doc:#}");
    assert_eq!(web["destinations"][0]["stats"]["conns"], 3, "{doc:#}");
    drop(lab);
}
