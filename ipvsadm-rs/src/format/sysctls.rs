//! `--sysctls`: IPVS's sysctls (`net.ipv4.vs.*`), what the library knows
//! of each, the estimator's state and the connection table's size, as
//! text and as the `--json` document. A sysctl the library does not know
//! (a newer kernel's) is listed with its text as the kernel prints it.

use serde::Serialize;

use ipvs_netlink::sysctl::{Estimator, Kind, Sysctl, Value};

use super::json::SCHEMA;

/// What `--sysctls` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The sysctls, by name.
    pub sysctls: Vec<Sysctl>,
    /// The connection hash table's size (the kernel's info reply), if known.
    pub conn_table_size: Option<u64>,
    /// `/proc/net/ip_vs_status`'s lines, on kernels that have it.
    pub status: Option<Vec<(String, String)>>,
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Bool => "bool",
        Kind::Int => "int",
        Kind::Pair => "pair",
        Kind::CpuList => "cpulist",
    }
}

/// The value as one word of a column: the kernel's text, a pair's tab a
/// space.
fn value_text(v: &Value) -> String {
    v.to_string().replace('\t', " ")
}

/// The text form: one line a sysctl (name, value, kind, first kernel),
/// then the estimator and the connection table.
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    let width = r
        .sysctls
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let vwidth = r
        .sysctls
        .iter()
        .map(|s| value_text(&s.value).len())
        .max()
        .unwrap_or(5)
        .max(5);
    out.push_str(&format!(
        "{:<width$} {:<vwidth$} {:<8} Since\n",
        "Name", "Value", "Kind"
    ));
    for s in &r.sysctls {
        let (kind, since) = match s.known {
            Some(k) => (kind_name(k.kind), k.since),
            None => ("unknown", "-"),
        };
        let line = format!(
            "{:<width$} {:<vwidth$} {kind:<8} {since}",
            s.name,
            value_text(&s.value)
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let e = Estimator::from_sysctls(&r.sysctls);
    out.push_str(&format!(
        "Estimator: {}",
        if e.kthreads { "kthreads" } else { "timer" }
    ));
    match e.running {
        Some(true) => out.push_str(", running"),
        Some(false) => out.push_str(", stopped (run_estimation=0)"),
        None => {}
    }
    if let Some(cpus) = &e.cpulist {
        out.push_str(&format!(", cpulist {cpus:?}"));
    }
    if let Some(nice) = e.nice {
        out.push_str(&format!(", nice {nice}"));
    }
    out.push('\n');
    match r.conn_table_size {
        Some(n) => out.push_str(&format!("Connection table size: {n}\n")),
        None => out.push_str("Connection table size: unknown\n"),
    }
    for (k, v) in r.status.iter().flatten() {
        out.push_str(&format!("Status {k}: {v}\n"));
    }
    out
}

#[derive(Serialize)]
struct Doc<'a> {
    schema: &'static str,
    sysctls: Vec<JsonSysctl<'a>>,
    estimator: JsonEstimator,
    conn_table_size: Option<u64>,
    status: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize)]
struct JsonSysctl<'a> {
    name: &'a str,
    value: serde_json::Value,
    text: String,
    kind: Option<&'static str>,
    since: Option<&'static str>,
}

#[derive(Serialize)]
struct JsonEstimator {
    kthreads: bool,
    running: Option<bool>,
    cpulist: Option<String>,
    nice: Option<i64>,
}

fn json_value(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Pair(a, b) => J::Array(vec![J::from(*a), J::from(*b)]),
        Value::CpuList(s) | Value::Raw(s) => J::String(s.clone()),
    }
}

/// The `--json` document of `--sysctls` (its members in
/// docs/json-schema.md).
pub fn json(r: &Report) -> String {
    let e = Estimator::from_sysctls(&r.sysctls);
    let doc = Doc {
        schema: SCHEMA,
        sysctls: r
            .sysctls
            .iter()
            .map(|s| JsonSysctl {
                name: &s.name,
                value: json_value(&s.value),
                text: s.value.to_string(),
                kind: s.known.map(|k| kind_name(k.kind)),
                since: s.known.map(|k| k.since),
            })
            .collect(),
        estimator: JsonEstimator {
            kthreads: e.kthreads,
            running: e.running,
            cpulist: e.cpulist,
            nice: e.nice,
        },
        conn_table_size: r.conn_table_size,
        status: r.status.as_ref().map(|lines| {
            lines
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect()
        }),
    };
    super::json::to_text(&doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipvs_netlink::sysctl::known_sysctl;

    fn sysctl(name: &str, text: &str) -> Sysctl {
        let known = known_sysctl(name);
        Sysctl {
            name: name.to_owned(),
            value: Value::parse(known.map(|k| k.kind), text),
            known,
        }
    }

    fn report() -> Report {
        Report {
            sysctls: vec![
                sysctl("conn_lfactor", "-4\n"),
                sysctl("est_cpulist", "0-1\n"),
                sysctl("est_nice", "0\n"),
                sysctl("run_estimation", "1\n"),
                sysctl("sync_threshold", "3\t50\n"),
            ],
            conn_table_size: Some(4096),
            status: None,
        }
    }

    #[test]
    fn text_lists_each_with_what_is_known_and_unknown_ones_raw() {
        assert_eq!(
            text(&report()),
            "Name           Value Kind     Since\n\
             conn_lfactor   -4    unknown  -\n\
             est_cpulist    0-1   cpulist  6.2\n\
             est_nice       0     int      6.2\n\
             run_estimation 1     bool     5.16\n\
             sync_threshold 3 50  pair     2.6\n\
             Estimator: kthreads, running, cpulist \"0-1\", nice 0\n\
             Connection table size: 4096\n"
        );
    }

    #[test]
    fn json_has_typed_values_and_the_kernels_text() {
        let v: serde_json::Value = serde_json::from_str(&json(&report())).unwrap();
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["sysctls"][0]["name"], "conn_lfactor");
        assert_eq!(v["sysctls"][0]["value"], "-4");
        assert_eq!(v["sysctls"][0]["kind"], serde_json::Value::Null);
        assert_eq!(v["sysctls"][4]["value"], serde_json::json!([3, 50]));
        assert_eq!(v["sysctls"][4]["text"], "3\t50");
        assert_eq!(v["sysctls"][3]["value"], true);
        assert_eq!(v["estimator"]["kthreads"], true);
        assert_eq!(v["conn_table_size"], 4096);
    }
}
