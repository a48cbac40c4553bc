//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`: the seeds
//! and every input that once crashed a target) through the fuzz targets,
//! in the normal test suite. A crash the fuzzer finds is copied there and
//! gets a named regression test in `fuzz_regressions.rs`.

use std::path::PathBuf;

use ipvs_tests::fuzz::{self, TARGETS};

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let data = std::fs::read(&path).expect("read a corpus file");
            (path.display().to_string(), data)
        })
        .collect()
}

fn replay(target: &'static str) -> usize {
    let inputs = corpus(target);
    let count = inputs.len();
    for (name, data) in inputs {
        eprintln!("{target}: {name}");
        assert!(fuzz::run(target, &data));
    }
    count
}

#[test]
fn every_target_has_a_corpus() {
    for target in TARGETS {
        assert!(!corpus(target).is_empty(), "{target}: no seeds");
    }
}

#[test]
fn netlink_packet_corpus() {
    assert!(replay("netlink_packet") > 0);
}

#[test]
fn handle_reply_corpus() {
    assert!(replay("handle_reply") > 0);
}

#[test]
fn conn_line_corpus() {
    assert!(replay("conn_line") > 0);
}

#[cfg(feature = "k8s")]
#[test]
fn k8s_json_corpus() {
    assert!(replay("k8s_json") > 0);
}

/// The command-line targets resolve host names: they run in a network
/// namespace of their own, so none is looked up on the network (see
/// [`fuzz::offline`]: as root, as CI runs; as another user in a user
/// namespace; skipped, saying so on stderr, only where neither can be made).
fn replay_offline(test: &str, target: &'static str) {
    fuzz::offline(test, move || assert!(replay(target) > 0));
}

#[test]
fn argv_corpus() {
    replay_offline("argv_corpus", "argv");
}

#[test]
fn restore_corpus() {
    replay_offline("restore_corpus", "restore");
}

/// The seeds reach the whole target: most of them map to a table that
/// the planner then takes, not only to reader errors.
#[cfg(feature = "k8s")]
#[test]
fn most_k8s_json_seeds_map_to_a_table() {
    use ipvs_k8s::mapping;
    let node = mapping::Node {
        ips: vec!["192.168.0.10".parse().expect("an address")],
        name: Some("node-a".to_owned()),
        zone: None,
        scheduler: "rr".to_owned(),
    };
    let inputs = corpus("k8s_json");
    let mapped = inputs
        .iter()
        .filter(|(_, data)| {
            std::str::from_utf8(data)
                .ok()
                .and_then(|text| mapping::read_objects(text).ok())
                .map(|objects| mapping::map(&objects, &node))
                .is_some_and(|m| !m.desired.is_empty())
        })
        .count();
    assert!(
        mapped * 3 >= inputs.len() * 2,
        "{mapped} of {} seeds map to a table",
        inputs.len()
    );
}
