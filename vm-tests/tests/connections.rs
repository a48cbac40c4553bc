//! `ipvs_netlink::conn` against the real kernel: the connection table of
//! a director in another network namespace, read with
//! `conn::connections_in_netns`, equals what the real ipvsadm lists there
//! (`ipvsadm -Lcn`), and the caller's own namespace shows none of it.

use std::net::SocketAddr;
use std::sync::mpsc;

use ipvs_netlink::conn::{self, Connection};
use ipvs_netlink::{Destination, Handle, Protocol, Service, ServiceId};
use vm_tests::lab::{Lab, CLIENT, ECHO, HOLD, REALS};
use vm_tests::sh;

const VIP: &str = "10.97.97.97";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// One row of `ipvsadm -Lcn` as (protocol, client, virtual, destination,
/// state).
fn ipvsadm_row(line: &str) -> (String, SocketAddr, SocketAddr, SocketAddr, String) {
    let w: Vec<&str> = line.split_whitespace().collect();
    (
        w[0].to_owned(),
        sa(w[3]),
        sa(w[4]),
        sa(w[5]),
        w[2].to_owned(),
    )
}

fn row(c: &Connection) -> (String, SocketAddr, SocketAddr, SocketAddr, String) {
    (
        c.protocol.to_string(),
        c.client,
        c.virtual_address,
        c.destination,
        c.state.clone(),
    )
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn connections_of_another_namespace_are_what_ipvsadm_lists_there() {
    vm_tests::enter_fresh_netns().unwrap();
    let (ready_tx, ready_rx) = mpsc::channel::<String>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    // The director: a thread of its own namespace (Lab::new makes one),
    // holding its lab until the main thread has read.
    let director = std::thread::spawn(move || {
        let mut lab = Lab::new(&[VIP]);
        let mut h = Handle::new().unwrap();
        for (port, proto) in [
            (ECHO, Protocol::Tcp),
            (HOLD, Protocol::Tcp),
            (53, Protocol::Udp),
        ] {
            let id = ServiceId::inet(proto, sa(&format!("{VIP}:{port}")));
            h.add_service(&Service::new(id, "rr")).unwrap();
            for real in &REALS[..2] {
                h.add_destination(&id, &Destination::new(sa(&format!("{real}:{port}"))))
                    .unwrap();
            }
        }
        // Two held connections, two closed ones, two UDP exchanges.
        for _ in 0..2 {
            lab.tcp(sa(&format!("{VIP}:{HOLD}")), |s| {
                use std::io::Write;
                s.write_all(b"x").is_ok()
            })
            .unwrap();
            lab.tcp(sa(&format!("{VIP}:{ECHO}")), |_| false).unwrap();
            lab.udp(sa(&format!("{VIP}:53")), b"q").unwrap();
        }
        // Let the closed connections reach their closing state.
        std::thread::sleep(std::time::Duration::from_secs(1));
        let me = std::fs::read_link("/proc/thread-self").unwrap();
        ready_tx
            .send(format!("/proc/{}/ns/net", me.display()))
            .unwrap();
        done_rx.recv().unwrap();
        drop(lab);
    });
    let path = ready_rx.recv().unwrap();

    let ours = conn::connections_in_netns(&path).unwrap();
    let real = sh(&format!("nsenter --net={path} ipvsadm -Lcn"));
    done_tx.send(()).unwrap();
    director.join().unwrap();
    eprintln!("ipvsadm -Lcn in the director's namespace:\n{real}");

    let mut want: Vec<_> = real.lines().skip(2).map(ipvsadm_row).collect();
    let mut got: Vec<_> = ours.iter().map(row).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    let client = CLIENT.parse::<std::net::IpAddr>().unwrap();
    assert!(ours.iter().all(|c| c.client.ip() == client), "{ours:?}");
    // Six connections: two held, two closed (in a closing state), two UDP.
    assert_eq!(ours.len(), 6, "{ours:?}");
    assert_eq!(
        ours.iter().filter(|c| c.state == "ESTABLISHED").count(),
        2,
        "{ours:?}"
    );
    assert_eq!(
        ours.iter().filter(|c| c.protocol == Protocol::Udp).count(),
        2,
        "{ours:?}"
    );
    // Every expiry is within its state's timeout (15 min at most).
    assert!(ours.iter().all(|c| c.expires.as_secs() <= 900), "{ours:?}");

    // This namespace has no IPVS connection at all.
    assert_eq!(conn::connections().unwrap(), vec![]);
}
