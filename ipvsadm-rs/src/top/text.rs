//! The frames of `--top` without a screen: a plain-text table
//! (comfy-table) with `--batch` or without a terminal, one JSON document
//! on one line with `--json`. Pure functions of a [`Frame`].

use comfy_table::{presets, CellAlignment, Table};
use serde_json::{json, Map, Value};

use ipvs_netlink::{ForwardMethod, Info, ServiceId};

use super::model::{Frame, Rates};
use crate::format::json::{service_value, SCHEMA};

/// The first line of a plain-text frame: number, time since the previous
/// frame, and how long the read took.
pub fn heading(frame: &Frame) -> String {
    let dests: usize = frame.services.iter().map(|s| s.dests.len()).sum();
    let interval = frame
        .interval
        .map_or("-".to_owned(), |i| format!("{:.3} s", i.as_secs_f64()));
    format!(
        "ipvsadm-rs --top: frame {}, interval {interval}, read in {:.1} ms, {} services, {dests} real servers",
        frame.number,
        frame.took.as_secs_f64() * 1000.0,
        frame.services.len(),
    )
}

/// A forwarding method as ipvsadm's listing names it.
pub fn forward_name(f: ForwardMethod) -> String {
    match f {
        ForwardMethod::Masquerade => "Masq".into(),
        ForwardMethod::Local => "Local".into(),
        ForwardMethod::Tunnel => "Tunnel".into(),
        ForwardMethod::DirectRoute => "Route".into(),
        ForwardMethod::Bypass => "Bypass".into(),
        other => other.to_raw().to_string(),
    }
}

/// The protocol and address columns of a service.
pub fn id_cells(id: &ServiceId) -> (String, String) {
    match *id {
        ServiceId::Inet {
            protocol,
            addr,
            port,
        } => (
            super::model::protocol_name(protocol),
            std::net::SocketAddr::new(addr, port).to_string(),
        ),
        ServiceId::Fwmark { mark, .. } => ("FWM".into(), mark.to_string()),
    }
}

fn rate_cells(r: Option<&Rates>) -> [String; 5] {
    match r {
        Some(r) => [
            r.conns,
            r.in_packets,
            r.out_packets,
            r.in_bytes,
            r.out_bytes,
        ]
        .map(|v| format!("{v:.1}")),
        None => std::array::from_fn(|_| "-".to_owned()),
    }
}

/// The headings of the plain-text table.
pub const TITLES: [&str; 12] = [
    "Prot",
    "Address:Port",
    "Sched",
    "Weight",
    "ActConn",
    "InActConn",
    "Conn/s",
    "InPkt/s",
    "OutPkt/s",
    "InByte/s",
    "OutByte/s",
    "Kubernetes",
];

/// A plain-text frame: [`heading`], then a table of every service in
/// ipvsadm's order, each followed by its real servers (`->` in the
/// first column, the forwarding method under Sched); rates with one
/// decimal, `-` where none can be told (the first frame, a new or
/// zeroed service). Columns are separated by blanks and no cell holds
/// one, so a line splits into its cells on whitespace.
pub fn batch(frame: &Frame) -> String {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(TITLES);
    let mut services: Vec<&super::model::ServiceRow> = frame.services.iter().collect();
    services.sort_by(|a, b| super::model::cmp_service_rows(a, b, super::model::Column::Service));
    for s in services {
        let (prot, addr) = id_cells(&s.service.id);
        let mut row = vec![
            prot,
            addr,
            s.service.scheduler.clone(),
            s.weight.to_string(),
            s.active.to_string(),
            s.inactive.to_string(),
        ];
        row.extend(rate_cells(s.rates.as_ref()));
        row.push(match &s.owner {
            Some(name) if !name.is_empty() => name.clone(),
            Some(_) => "from-k8s".to_owned(),
            None => String::new(),
        });
        table.add_row(row);
        let mut dests: Vec<&super::model::DestRow> = s.dests.iter().collect();
        dests.sort_by(|a, b| super::model::cmp_dest_rows(a, b, super::model::Column::Service));
        for d in dests {
            let mut row = vec![
                "->".to_owned(),
                d.dest.socket_addr().to_string(),
                forward_name(d.dest.forward),
                d.dest.weight.to_string(),
                d.dest.active_conns.to_string(),
                d.dest.inactive_conns.to_string(),
            ];
            row.extend(rate_cells(d.rates.as_ref()));
            row.push(String::new());
            table.add_row(row);
        }
    }
    if let Some(c) = table.column_mut(0) {
        c.set_padding((0, 1));
    }
    for i in 3..11 {
        if let Some(c) = table.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut text = heading(frame);
    text.push('\n');
    for line in table.lines() {
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn rates_value(r: Option<&Rates>) -> Value {
    match r {
        Some(r) => json!({
            "conns": r.conns,
            "in_packets": r.in_packets,
            "out_packets": r.out_packets,
            "in_bytes": r.in_bytes,
            "out_bytes": r.out_bytes,
        }),
        None => Value::Null,
    }
}

/// A JSON frame on one line: the document of `-Ln --json` (same schema,
/// same members, the kernel's order) with, added, the frame's `frame`
/// number, `interval_seconds` (null on the first), `read_seconds`, and
/// in each service and real server `rates` (per second, null when none
/// can be told) and, for a service `--from-k8s` owns, `kubernetes`.
pub fn json(info: &Info, frame: &Frame) -> String {
    let services: Vec<Value> = frame
        .services
        .iter()
        .map(|s| {
            let dests: Vec<_> = s.dests.iter().map(|d| d.dest.clone()).collect();
            let mut v = service_value(&s.service, &dests);
            if let Value::Object(obj) = &mut v {
                obj.insert("rates".into(), rates_value(s.rates.as_ref()));
                if let Some(name) = &s.owner {
                    obj.insert("kubernetes".into(), json!({ "name": name }));
                }
                if let Some(Value::Array(list)) = obj.get_mut("destinations") {
                    for (d, row) in list.iter_mut().zip(&s.dests) {
                        if let Value::Object(d) = d {
                            d.insert("rates".into(), rates_value(row.rates.as_ref()));
                        }
                    }
                }
            }
            v
        })
        .collect();
    let (a, b, c) = info.version_triple();
    let mut doc = Map::new();
    doc.insert("schema".into(), SCHEMA.into());
    doc.insert("ipvs_version".into(), format!("{a}.{b}.{c}").into());
    doc.insert("conn_table_size".into(), info.conn_table_size.into());
    doc.insert("frame".into(), frame.number.into());
    doc.insert(
        "interval_seconds".into(),
        frame
            .interval
            .map_or(Value::Null, |i| json!(i.as_secs_f64())),
    );
    doc.insert("read_seconds".into(), json!(frame.took.as_secs_f64()));
    doc.insert("services".into(), Value::Array(services));
    let mut text = Value::Object(doc).to_string();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::model::{frame, Owners, Sample};
    use ipvs_netlink::{Destination, Service, Stats};
    use std::time::Duration;

    fn sample(secs: u64, conns: u64) -> Sample {
        let mut s = Service::new(ServiceId::tcp("10.0.0.1:80".parse().unwrap()), "rr");
        let mut st = Stats::default();
        st.conns = conns;
        st.in_bytes = conns * 1000;
        s.stats = Some(st);
        let mut d = Destination::new("10.1.0.1:8080".parse().unwrap());
        d.forward = ForwardMethod::Masquerade;
        d.stats = Some(st);
        d.active_conns = 3;
        let fw = Service::new(
            ServiceId::fwmark(ipvs_netlink::AddressFamily::Inet, 42),
            "wlc",
        );
        Sample {
            at: Duration::from_secs(secs),
            took: Duration::from_micros(1500),
            table: vec![(fw, vec![]), (s, vec![d])],
        }
    }

    #[test]
    fn a_batch_frame_splits_into_cells_on_whitespace() {
        let owners: Owners = [(
            ServiceId::fwmark(ipvs_netlink::AddressFamily::Inet, 42),
            String::new(),
        )]
        .into();
        let f = frame(2, Some(&sample(1, 10)), sample(3, 30), &owners);
        let text = batch(&f);
        print!("{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "ipvsadm-rs --top: frame 2, interval 2.000 s, read in 1.5 ms, 2 services, 1 real servers"
        );
        let cells: Vec<Vec<&str>> = lines[1..]
            .iter()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(cells[0], TITLES);
        assert_eq!(
            cells[1],
            [
                "TCP",
                "10.0.0.1:80",
                "rr",
                "1",
                "3",
                "0",
                "10.0",
                "0.0",
                "0.0",
                "10000.0",
                "0.0"
            ]
        );
        assert_eq!(
            cells[2],
            [
                "->",
                "10.1.0.1:8080",
                "Masq",
                "1",
                "3",
                "0",
                "10.0",
                "0.0",
                "0.0",
                "10000.0",
                "0.0"
            ]
        );
        assert_eq!(
            cells[3],
            ["FWM", "42", "wlc", "0", "0", "0", "-", "-", "-", "-", "-", "from-k8s"]
        );
    }
}
