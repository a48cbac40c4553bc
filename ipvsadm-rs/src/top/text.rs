//! The frames of `--top` without a screen: a plain-text table
//! (comfy-table) with `--batch` or without a terminal, one JSON document
//! on one line with `--json`. Pure functions of a [`Frame`].

use comfy_table::{presets, CellAlignment, Table};
use serde::Serialize;

use ipvs_netlink::{Destination, ForwardMethod, Info, Service, ServiceId};

use super::model::{Frame, Rates, ServiceRow};
use crate::format::json::SCHEMA;

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

/// A frame's rates as JSON: per second, in the schema's names.
#[derive(Serialize)]
struct JsonRates {
    conns: f64,
    in_packets: f64,
    out_packets: f64,
    in_bytes: f64,
    out_bytes: f64,
}

/// `None` (JSON's null) where no rate can be told.
fn json_rates(r: Option<&Rates>) -> Option<JsonRates> {
    r.map(|r| JsonRates {
        conns: r.conns,
        in_packets: r.in_packets,
        out_packets: r.out_packets,
        in_bytes: r.in_bytes,
        out_bytes: r.out_bytes,
    })
}

/// A real server of a JSON frame: the listing's members, then `rates`.
#[derive(Serialize)]
struct JsonDest<'a> {
    #[serde(flatten)]
    dest: &'a Destination,
    rates: Option<JsonRates>,
}

/// The Kubernetes name of a service `--from-k8s` owns.
#[derive(Serialize)]
struct JsonKubernetes<'a> {
    name: &'a str,
}

/// A service of a JSON frame: the listing's members (its real servers
/// with their rates), then `rates` and `kubernetes`.
#[derive(Serialize)]
struct JsonService<'a> {
    #[serde(flatten)]
    service: &'a Service,
    destinations: Vec<JsonDest<'a>>,
    rates: Option<JsonRates>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kubernetes: Option<JsonKubernetes<'a>>,
}

/// A JSON frame: the listing's document with the frame's members.
#[derive(Serialize)]
struct JsonFrame<'a> {
    schema: &'static str,
    ipvs_version: String,
    conn_table_size: u32,
    frame: u64,
    interval_seconds: Option<f64>,
    read_seconds: f64,
    services: JsonServices<'a>,
}

/// Writes a JSON frame on one line to `out` as it is serialised, never
/// whole in memory (25 MB at 10,000 services of 4 real servers); an
/// error is `out`'s. The frame is the document of `-Ln --json` (same
/// schema, same members in the same order, the kernel's order of
/// services) with, added, the frame's `frame` number, `interval_seconds`
/// (null on the first), `read_seconds`, and in each service and real
/// server `rates` (per second, null when none can be told) and, for a
/// service `--from-k8s` owns, `kubernetes`; serialised straight from the
/// frame.
pub fn write_json(info: &Info, frame: &Frame, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let (a, b, c) = info.version_triple();
    let doc = JsonFrame {
        schema: SCHEMA,
        ipvs_version: format!("{a}.{b}.{c}"),
        conn_table_size: info.conn_table_size,
        frame: frame.number,
        interval_seconds: frame.interval.map(|i| i.as_secs_f64()),
        read_seconds: frame.took.as_secs_f64(),
        services: JsonServices(&frame.services),
    };
    serde_json::to_writer(&mut *out, &doc).map_err(std::io::Error::from)?;
    out.write_all(b"\n")
}

/// A frame's services, serialised one by one as the writer takes them
/// (no vector of borrowed documents built first).
struct JsonServices<'a>(&'a [ServiceRow]);

impl Serialize for JsonServices<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for s in self.0 {
            seq.serialize_element(&JsonService {
                service: &s.service,
                destinations: s
                    .dests
                    .iter()
                    .map(|d| JsonDest {
                        dest: &d.dest,
                        rates: json_rates(d.rates.as_ref()),
                    })
                    .collect(),
                rates: json_rates(s.rates.as_ref()),
                kubernetes: s.owner.as_deref().map(|name| JsonKubernetes { name }),
            })?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`write_json`]'s frame, as text.
    fn json(info: &Info, frame: &Frame) -> String {
        let mut text = Vec::new();
        write_json(info, frame, &mut text).unwrap();
        String::from_utf8(text).unwrap()
    }
    use crate::top::model::{frame, Owners, Sample};
    use ipvs_netlink::Stats;
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
        let first = frame(1, None, sample(1, 10), &owners);
        let f = frame(2, Some(&first), sample(3, 30), &owners);
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

    /// The first frame (no rates yet) is the listing's document, service
    /// for service and member for member in the listing's order, with
    /// `"rates":null` added to each service and real server.
    #[test]
    fn a_json_frame_is_the_listing_s_document_with_rates() {
        let now = sample(3, 30);
        let listing = crate::format::json::compact(&crate::format::json::table(None, &now.table));
        let f = frame(1, None, now, &Owners::new());
        let info = Info::from_attrs(&[
            ipvs_netlink::InfoAttr::Version(0x010201),
            ipvs_netlink::InfoAttr::ConnTableSize(4096),
        ])
        .unwrap();
        let doc = json(&info, &f);
        let services = |text: &str| -> String {
            let at = text.find("\"services\":").unwrap();
            text[at..].trim_end().trim_end_matches('}').to_owned()
        };
        assert_eq!(
            services(&doc.replace(",\"rates\":null", "")),
            services(&listing)
        );
        assert!(doc.starts_with(
            "{\"schema\":\"ipvsadm-rs/v2\",\"ipvs_version\":\"1.2.1\",\"conn_table_size\":4096,\
             \"frame\":1,\"interval_seconds\":null,\"read_seconds\":0.0015,\"services\":"
        ));
        assert_eq!(doc.matches("\"rates\":null").count(), 3, "{doc}");
    }

    /// A measuring tool, not a check (`cargo test --release -p ipvsadm-rs
    /// --features top --lib -- --ignored --nocapture cost_of_frames`): the
    /// time to make one frame, plain text and JSON, of 10,000 services of
    /// 4 real servers, natively.
    #[test]
    #[ignore = "a measurement: run it by hand"]
    fn cost_of_frames_of_10000_services() {
        use std::time::Instant;
        let table = |secs: u64| -> Sample {
            let table = (0..10_000u32)
                .map(|i| {
                    let vip = std::net::Ipv4Addr::from(0x0a64_0000 + i);
                    let mut s = Service::new(ServiceId::tcp((vip, 80).into()), "rr");
                    let mut st = Stats::default();
                    st.conns = u64::from(i) * secs;
                    st.in_bytes = st.conns * 1000;
                    s.stats = Some(st);
                    let dests = (1..=4u32)
                        .map(|k| {
                            let rip = std::net::Ipv4Addr::from(0xac10_0000 + i * 4 + k);
                            let mut d = Destination::new((rip, 8080).into());
                            d.forward = ForwardMethod::Masquerade;
                            d.stats = Some(st);
                            d
                        })
                        .collect();
                    (s, dests)
                })
                .collect();
            Sample {
                at: Duration::from_secs(secs),
                took: Duration::from_millis(1),
                table,
            }
        };
        let first = frame(1, None, table(1), &Owners::new());
        let f = frame(2, Some(&first), table(2), &Owners::new());
        let info = Info::from_attrs(&[
            ipvs_netlink::InfoAttr::Version(0x010201),
            ipvs_netlink::InfoAttr::ConnTableSize(4096),
        ])
        .unwrap();
        for _ in 0..3 {
            let t = Instant::now();
            let text = batch(&f);
            let text_took = t.elapsed();
            let t = Instant::now();
            let doc = json(&info, &f);
            let json_took = t.elapsed();
            println!(
                "10,000 x 4: text frame {text_took:?} ({} bytes), JSON frame {json_took:?} ({} bytes)",
                text.len(),
                doc.len()
            );
        }
    }
}
