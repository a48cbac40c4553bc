//! The conntrack flush (`ipvs_k8s::node::conntrack`) against the real
//! kernel with IPVS and `net.ipv4.vs.conntrack=1`, whose entries name the
//! real server in their reply tuple.
//!
//! What the kernel shows: with `expire_nodest_conn=0` the entries of a
//! removed real server stay (stale) and the flush deletes exactly them;
//! with `expire_nodest_conn=1` (kube-proxy's setting, `--set-sysctls`)
//! the kernel itself expires the IPVS connections of a removed real
//! server within seconds and deletes their entries with them, so the
//! flush finds nothing left and the client's next datagram gets an entry
//! naming the new real server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use ipvs_k8s::node::conntrack::{self, Ctnetlink, Flush, IPPROTO_UDP};
use ipvs_netlink::{Destination, Handle, Service, ServiceId};
use vm_tests::lab::{Lab, CLIENT, REALS};

const VIP: &str = "10.96.0.53";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The reply source of the UDP entry from the client's port `port` to
/// VIP:53, as ctnetlink lists it.
fn reply_source(port: u16) -> Option<SocketAddr> {
    let mut ct = Ctnetlink::open().unwrap();
    let mut found = None;
    ct.list(None, |e| {
        if e.protocol == IPPROTO_UDP
            && e.orig.src_port == Some(port)
            && e.orig.dst == VIP.parse::<IpAddr>().unwrap()
            && e.orig.dst_port == Some(53)
        {
            found = Some(SocketAddr::new(e.reply.src, e.reply.src_port.unwrap()));
        }
    })
    .unwrap();
    found
}

/// The real servers IPVS sent the client's port `port` to, from
/// /proc/net/ip_vs_conn ([`ipvs_netlink::conn`]).
fn ipvs_destinations(port: u16) -> Vec<Ipv4Addr> {
    let client = SocketAddr::new(CLIENT.parse().unwrap(), port);
    ipvs_netlink::conn::connections()
        .unwrap()
        .into_iter()
        .filter(|c| c.protocol == ipvs_netlink::Protocol::Udp && c.client == client)
        .filter_map(|c| match c.destination.ip() {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        })
        .collect()
}

/// Datagrams from the client's `port` to VIP:53, one a second, until
/// the echo comes back: how many were sent.
fn ask(lab: &Lab, port: u16, payload: &'static [u8]) -> usize {
    let tries = lab.client.run(move || {
        let sock = UdpSocket::bind((CLIENT, port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 64];
        (1..=5).find(|_| {
            sock.send_to(payload, (VIP, 53)).unwrap();
            matches!(sock.recv(&mut buf), Ok(n) if &buf[..n] == payload)
        })
    });
    tries.unwrap_or_else(|| panic!("no echo for the client's port {port}"))
}

/// Every UDP entry to the VIP, for failure messages.
fn entries() -> Vec<String> {
    let mut out = Vec::new();
    Ctnetlink::open()
        .unwrap()
        .list(None, |e| out.push(e.to_string()))
        .unwrap();
    out
}

/// The lab with IPVS's conntrack on, a UDP service VIP:53 and VIP:5060
/// (one real server each, `REALS[0]` and `REALS[2]`), and `nodest` as
/// `expire_nodest_conn`.
fn setup(nodest: &str) -> (Lab, Handle, ServiceId) {
    let lab = Lab::new(&[VIP]);
    let mut h = Handle::new().unwrap();
    for (name, value) in [("conntrack", "1"), ("expire_nodest_conn", nodest)] {
        std::fs::write(format!("/proc/sys/net/ipv4/vs/{name}"), value).unwrap();
    }
    // Conntrack runs in a namespace only when something there needs it
    // (on a node: the NAT rules). A NAT service at the FTP port is what
    // makes IPVS itself ask for it, so no firewall tool is needed here.
    let ftp = ServiceId::tcp(sa(&format!("{VIP}:21")));
    h.add_service(&Service::new(ftp, "rr")).unwrap();
    h.add_destination(&ftp, &Destination::new(sa(&format!("{}:21", REALS[2]))))
        .unwrap();
    let dns = ServiceId::inet(ipvs_netlink::Protocol::Udp, sa(&format!("{VIP}:53")));
    h.add_service(&Service::new(dns, "rr")).unwrap();
    h.add_destination(&dns, &Destination::new(sa(&format!("{}:53", REALS[0]))))
        .unwrap();
    let sip = ServiceId::inet(ipvs_netlink::Protocol::Udp, sa(&format!("{VIP}:5060")));
    h.add_service(&Service::new(sip, "rr")).unwrap();
    h.add_destination(&sip, &Destination::new(sa(&format!("{}:5060", REALS[2]))))
        .unwrap();
    (lab, h, dns)
}

/// One datagram from the client's port 40060 to VIP:5060, answered.
fn ask_sip(lab: &Lab) {
    lab.client.run(|| {
        let sock = UdpSocket::bind((CLIENT, 40060)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        sock.send_to(b"sip", (VIP, 5060)).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(sock.recv(&mut buf).unwrap(), 3);
    });
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn the_flush_deletes_the_stale_entries_of_a_removed_real_server() {
    let (lab, mut h, dns) = setup("0");
    let (old, new) = (
        sa(&format!("{}:53", REALS[0])),
        sa(&format!("{}:53", REALS[1])),
    );
    assert_eq!(ask(&lab, 40053, b"one"), 1);
    assert_eq!(ask(&lab, 40054, b"one"), 1);
    ask_sip(&lab);
    assert_eq!(reply_source(40053), Some(old), "{:#?}", entries());
    assert_eq!(reply_source(40054), Some(old));

    // The old real server goes, a new one comes: the entries stay, stale.
    h.delete_destination(&dns, old).unwrap();
    h.add_destination(&dns, &Destination::new(new)).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(reply_source(40053), Some(old), "{:#?}", entries());
    assert_eq!(reply_source(40054), Some(old));

    // The flush of the removed endpoint deletes them, and nothing else.
    let before = entries();
    let flush = Flush {
        udp_endpoint_addrs: vec![old],
        ..Flush::default()
    };
    let done = conntrack::flush(&flush).unwrap();
    assert_eq!(done.deleted, 2, "{done:?} of {before:#?}");
    assert_eq!(done.listed, before.len());
    assert_eq!(reply_source(40053), None);
    assert_eq!(reply_source(40054), None);
    let after = entries();
    assert_eq!(after.len(), before.len() - 2, "{after:#?}");
    assert!(after.iter().any(|e| e.contains(":5060")), "{after:#?}");
    assert_eq!(conntrack::flush(&flush).unwrap().deleted, 0);
}

#[test]
#[cfg_attr(not(test_vm), ignore = "runs in the test VM: vm-tests/run.sh tests")]
fn with_expire_nodest_conn_the_kernel_deletes_them_itself() {
    let (lab, mut h, dns) = setup("1");
    let (old, new) = (
        sa(&format!("{}:53", REALS[0])),
        sa(&format!("{}:53", REALS[1])),
    );
    assert_eq!(ask(&lab, 40053, b"one"), 1);
    assert_eq!(reply_source(40053), Some(old), "{:#?}", entries());
    h.delete_destination(&dns, old).unwrap();
    h.add_destination(&dns, &Destination::new(new)).unwrap();
    // The kernel expires the IPVS connection of the removed real server
    // and its entry within seconds.
    let gone = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        reply_source(40053).is_none()
    });
    assert!(gone, "{:#?}", entries());
    let flush = Flush {
        udp_endpoint_addrs: vec![old],
        ..Flush::default()
    };
    assert_eq!(conntrack::flush(&flush).unwrap().deleted, 0);
    // The client's next datagram: the new real server, in IPVS and in
    // its new entry.
    assert_eq!(ask(&lab, 40053, b"two"), 1);
    assert!(ipvs_destinations(40053).contains(&REALS[1].parse().unwrap()));
    assert_eq!(reply_source(40053), Some(new));
}
