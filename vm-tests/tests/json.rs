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
