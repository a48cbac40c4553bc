//! A small Kubernetes-shaped cluster in network namespaces, inside the VM,
//! for the packet path of `--from-k8s`: real TCP and UDP flows whose
//! servers report the peer address they saw.
//!
//! ```text
//!                         LAN 192.168.1.0/24: bridge br0 in its own namespace
//!   client-in 192.168.1.10 ─┐     (clients: 10.96.0.0/12 and 198.51.100.0/24 via node1)
//!   client-out 192.168.1.100┼── br0
//!   node1 eth0 192.168.1.1 ─┤            node2 eth0 192.168.1.2
//!   │ (the caller's thread)  └───────────┤ 10.244.1.0/24 via node1
//!   │ kube-ipvs0 (dummy, down)           │ cali-c ── pod-c 10.244.2.2/32
//!   │ 10.244.2.0/24 via 192.168.1.2
//!   ├ cali-a ── pod-a 10.244.1.2/32
//!   └ cali-b ── pod-b 10.244.1.3/32
//! ```
//!
//! Pods are routed as Calico routes them: each pod holds its address as a
//! /32 on `eth0` with `default via 169.254.1.1 dev eth0` (an on-link
//! gateway that exists nowhere), the node's end of the veth has no address,
//! answers ARP by proxy (`proxy_arp=1`, `proxy_delay=0`) and the node has a
//! /32 route per pod. So every packet of a pod crosses the node's IP layer
//! (prerouting, forward or input, postrouting), never a bridge. The nodes
//! have `ip_forward=1` and a default route to a LAN address that nobody
//! holds (proxy ARP answers only for addresses routed elsewhere).
//!
//! Node1 is the namespace of the thread that calls [`Cluster::new`]: the
//! real ipvsadm, nft and `ipvsadm-rs` started from that thread act on
//! node1. Every pod runs a TCP and a UDP server on [`POD_PORT`] (threads
//! inside the pod's namespace, real sockets): TCP answers one line
//! `"<pod address> <peer address>:<peer port>\n"` and closes; UDP answers
//! each datagram with the same line. A flow ([`Cluster::tcp`],
//! [`Cluster::udp`]) gives back a [`Seen`]: which pod answered and the
//! source address it saw.
//!
//! The links are made with iproute2's `/sbin/ip`, named by its path: the
//! VM's busybox `sh` runs its own `ip` applet for a bare `ip`, which knows
//! neither `peer name` nor bridges.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::thread;
use std::time::Duration;

use crate::lab::{sh, Netns};
use crate::live::Live;

/// node1's LAN address (where IPVS and `--from-k8s` run).
pub const NODE1: &str = "192.168.1.1";
/// node2's LAN address (it routes to pod-c).
pub const NODE2: &str = "192.168.1.2";
/// The client inside the LoadBalancer source ranges ([`SOURCE_RANGE`]).
pub const CLIENT_IN: &str = "192.168.1.10";
/// The client outside the source ranges.
pub const CLIENT_OUT: &str = "192.168.1.100";
/// A `loadBalancerSourceRanges` CIDR holding [`CLIENT_IN`] but not
/// [`CLIENT_OUT`].
pub const SOURCE_RANGE: &str = "192.168.1.0/28";
/// The cluster CIDR (`--cluster-cidr`): every pod, neither client.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// pod-a's address (on node1).
pub const POD_A: &str = "10.244.1.2";
/// pod-b's address (on node1).
pub const POD_B: &str = "10.244.1.3";
/// pod-c's address (on node2).
pub const POD_C: &str = "10.244.2.2";

/// What another tool holds on node1 before us: an nft table ...
pub const OTHER_TABLE: &str = "table inet othertool {
\tset blocked {
\t\ttype ipv4_addr
\t\telements = { 203.0.113.7 }
\t}

\tchain input {
\t\ttype filter hook input priority filter + 10; policy accept;
\t\tip saddr @blocked drop
\t}
}
";
/// ... and an IPVS service (`ipvsadm` lines); both must be left as
/// they are.
pub const OTHER_SERVICE: &str =
    "-A -t 10.200.0.1:80 -s wlc\n-a -t 10.200.0.1:80 -r 10.9.9.9:80 -m -w 1\n";

/// The socket address of `ip` and `port`.
pub fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// The Service CIDR the clients route via node1.
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
/// The LoadBalancer addresses' range, routed via node1 by the clients.
pub const LB_CIDR: &str = "198.51.100.0/24";
/// The dummy interface holding the VIPs on node1.
pub const DUMMY: &str = "kube-ipvs0";
/// The port of every pod's TCP and UDP server.
pub const POD_PORT: u16 = 8080;

/// A pod: its name, address, node and namespace.
pub struct Pod {
    /// `pod-a`, `pod-b` (on node1) or `pod-c` (behind node2).
    pub name: &'static str,
    /// Its address (a /32 on its `eth0`).
    pub ip: &'static str,
    /// 1 or 2.
    pub node: u8,
    /// Its network namespace.
    pub ns: Netns,
}

/// Where a flow starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// node1 itself (the caller's namespace).
    Node1,
    /// node2.
    Node2,
    /// The client inside the source ranges.
    ClientIn,
    /// The client outside them.
    ClientOut,
    /// A pod, by its index in [`Cluster::pods`] (0 pod-a, 1 pod-b, 2 pod-c).
    Pod(usize),
}

/// What a pod's server reported for one flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The address of the pod that answered.
    pub pod: IpAddr,
    /// The source the pod saw.
    pub peer: SocketAddr,
}

/// Panics unless every pod of `seen` saw the source address `want`.
pub fn assert_sources(seen: &[Seen], want: &str, what: &str) {
    for s in seen {
        assert_eq!(
            Some(s.source()),
            want.parse().ok(),
            "{what}: pod {} saw {}, not {want}",
            s.pod,
            s.peer
        );
    }
}

impl Seen {
    /// The source address the pod saw.
    pub fn source(&self) -> IpAddr {
        self.peer.ip()
    }

    fn parse(text: &str) -> io::Result<Seen> {
        let bad = || io::Error::other(format!("bad answer {text:?}"));
        let (pod, peer) = text.trim().split_once(' ').ok_or_else(bad)?;
        Ok(Seen {
            pod: pod.parse().map_err(|_| bad())?,
            peer: peer.parse().map_err(|_| bad())?,
        })
    }
}

/// The cluster: the LAN, the clients, node2 and the pods, their servers
/// running. Node1 is the namespace of the thread that built it.
pub struct Cluster {
    /// The LAN's namespace (the bridge `br0`).
    pub lan: Netns,
    /// The client at [`CLIENT_IN`].
    pub client_in: Netns,
    /// The client at [`CLIENT_OUT`].
    pub client_out: Netns,
    /// node2.
    pub node2: Netns,
    /// pod-a and pod-b on node1, pod-c behind node2.
    pub pods: Vec<Pod>,
}

/// A veth pair: `here` in the namespace of thread `here_tid` (None: the
/// caller's), `there` in the namespace of thread `there_tid`; both up.
fn veth(here: &str, here_ns: Option<&Netns>, there: &str, there_ns: &Netns) {
    let line = format!(
        "/sbin/ip link add {here} type veth peer name {there} netns {} && /sbin/ip link set {here} up",
        there_ns.tid()
    );
    match here_ns {
        Some(ns) => ns.sh(&line),
        None => sh(&line),
    }
    there_ns.sh(&format!("/sbin/ip link set {there} up"));
}

/// Writes `value` to the sysctl `name` (`net/ipv4/ip_forward`) of the
/// caller's namespace.
fn sysctl(name: &str, value: &str) {
    let path = format!("/proc/sys/{name}");
    std::fs::write(&path, value).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
}

/// The shell lines that give a node the pod `pod` on its veth `cali` (the
/// node's end), Calico's way (see the module's doc).
fn calico_node_side(cali: &str, pod: &str) -> String {
    format!(
        "echo 1 >/proc/sys/net/ipv4/conf/{cali}/proxy_arp && \
         echo 0 >/proc/sys/net/ipv4/neigh/{cali}/proxy_delay && \
         /sbin/ip route add {pod}/32 dev {cali} scope link"
    )
}

impl Cluster {
    /// Moves the caller's thread into a fresh namespace (node1) and builds
    /// the rest, with every pod's servers listening when it returns.
    /// Node1 gets `eth0` on the LAN, the routes to the pods and `ip_forward`;
    /// nothing of IPVS, nftables or [`DUMMY`] (the test makes those).
    pub fn new() -> Cluster {
        crate::enter_fresh_netns().unwrap_or_else(|e| panic!("unshare: {e}"));
        let ns = || Netns::new().unwrap_or_else(|e| panic!("netns: {e}"));
        let (lan, client_in, client_out, node2) = (ns(), ns(), ns(), ns());
        lan.sh("/sbin/ip link add br0 type bridge && /sbin/ip link set br0 up");
        // Each host's eth0 is joined to the bridge by its port lan-<host>.
        let join = |port: &str, host: Option<&Netns>, addr: &str| {
            veth("eth0", host, port, &lan);
            lan.sh(&format!("/sbin/ip link set {port} master br0"));
            let line = format!("/sbin/ip addr add {addr}/24 dev eth0");
            match host {
                Some(h) => h.sh(&line),
                None => sh(&line),
            }
        };
        join("lan-node1", None, NODE1);
        join("lan-node2", Some(&node2), NODE2);
        join("lan-cin", Some(&client_in), CLIENT_IN);
        join("lan-cout", Some(&client_out), CLIENT_OUT);
        for client in [&client_in, &client_out] {
            client.sh(&format!(
                "/sbin/ip route add {SERVICE_CIDR} via {NODE1} && /sbin/ip route add {LB_CIDR} via {NODE1}"
            ));
        }

        let mut pods = Vec::new();
        for (name, ip, node, cali) in [
            ("pod-a", "10.244.1.2", 1u8, "cali-a"),
            ("pod-b", "10.244.1.3", 1, "cali-b"),
            ("pod-c", "10.244.2.2", 2, "cali-c"),
        ] {
            let pod = ns();
            let host = if node == 1 { None } else { Some(&node2) };
            veth(cali, host, "eth0", &pod);
            pod.sh(&format!(
                "/sbin/ip addr add {ip}/32 dev eth0 && \
                 /sbin/ip route add 169.254.1.1 dev eth0 scope link && \
                 /sbin/ip route add default via 169.254.1.1 dev eth0"
            ));
            match host {
                Some(h) => h.sh(&calico_node_side(cali, ip)),
                None => sh(&calico_node_side(cali, ip)),
            }
            pods.push(Pod {
                name,
                ip,
                node,
                ns: pod,
            });
        }

        sysctl("net/ipv4/ip_forward", "1");
        sh("/sbin/ip route add 10.244.2.0/24 via 192.168.1.2 && /sbin/ip route add default via 192.168.1.254");
        node2.sh("echo 1 >/proc/sys/net/ipv4/ip_forward && \
             /sbin/ip route add 10.244.1.0/24 via 192.168.1.1 && /sbin/ip route add default via 192.168.1.254");

        for pod in &pods {
            let ip = pod.ip;
            let (tcp, udp) = pod.ns.run(move || {
                let tcp = TcpListener::bind((ip, POD_PORT))
                    .unwrap_or_else(|e| panic!("bind tcp {ip}:{POD_PORT}: {e}"));
                let udp = UdpSocket::bind((ip, POD_PORT))
                    .unwrap_or_else(|e| panic!("bind udp {ip}:{POD_PORT}: {e}"));
                (tcp, udp)
            });
            thread::spawn(move || {
                for mut s in tcp.incoming().map_while(Result::ok) {
                    if let Ok(peer) = s.peer_addr() {
                        let _ = s.write_all(format!("{ip} {peer}\n").as_bytes());
                    }
                }
            });
            thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while let Ok((_, peer)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(format!("{ip} {peer}\n").as_bytes(), peer);
                }
            });
        }
        Cluster {
            lan,
            client_in,
            client_out,
            node2,
            pods,
        }
    }

    /// The pod at `ip`.
    pub fn pod(&self, ip: IpAddr) -> &Pod {
        self.pods
            .iter()
            .find(|p| p.ip.parse::<IpAddr>().ok() == Some(ip))
            .unwrap_or_else(|| panic!("no pod has {ip}"))
    }

    /// Runs `f` in the namespace `from` names (on a new thread; node1's is
    /// the caller's, so `f` runs on a thread spawned there).
    pub fn run<T: Send + 'static>(&self, from: Host, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = match from {
            Host::Node1 => {
                return thread::spawn(f)
                    .join()
                    .unwrap_or_else(|_| panic!("a thread in node1 panicked"))
            }
            Host::Node2 => &self.node2,
            Host::ClientIn => &self.client_in,
            Host::ClientOut => &self.client_out,
            Host::Pod(i) => &self.pods[i].ns,
        };
        ns.run(f)
    }

    /// One TCP connection from `from` to `to`: what the pod saw, or the
    /// error (refused, timed out: 3 s to connect, 5 s to read).
    pub fn tcp(&self, from: Host, to: SocketAddr) -> io::Result<Seen> {
        self.run(from, move || tcp_flow(to))
    }

    /// One UDP exchange from `from` to `to` (a datagram, its answer within
    /// 3 s): what the pod saw, or the error.
    pub fn udp(&self, from: Host, to: SocketAddr) -> io::Result<Seen> {
        self.run(from, move || udp_flow(to))
    }

    /// Flows (UDP when `udp`, else TCP) from `from` to `to`, at most
    /// [`EACH_POD_TRIES`], until each pod of `pods` (addresses) answered;
    /// panics otherwise or on a failed flow. One [`Seen`] per pod, in the
    /// order they answered.
    pub fn each_pod(&self, from: Host, to: SocketAddr, udp: bool, pods: &[&str]) -> Vec<Seen> {
        let proto = if udp { "udp" } else { "tcp" };
        let mut seen: Vec<Seen> = Vec::new();
        for _ in 0..EACH_POD_TRIES {
            let got = if udp {
                self.udp(from, to)
            } else {
                self.tcp(from, to)
            }
            .unwrap_or_else(|e| panic!("{from:?} -> {to} {proto}: {e}"));
            eprintln!("  {from:?} -> {to} {proto}: {} saw {}", got.pod, got.peer);
            if !seen.iter().any(|s| s.pod == got.pod) {
                seen.push(got);
            }
            if pods
                .iter()
                .all(|p| seen.iter().any(|s| Some(s.pod) == p.parse().ok()))
            {
                return seen;
            }
        }
        panic!("{from:?} -> {to} {proto}: not every pod of {pods:?} answered: {seen:?}");
    }

    /// `GET path` over HTTP/1.1 from `from` to `to`: the status code and
    /// the body.
    pub fn http_get(&self, from: Host, to: SocketAddr, path: &str) -> io::Result<(u16, String)> {
        let path = path.to_owned();
        self.run(from, move || http_get(to, &path))
    }
}

/// How many flows [`Cluster::each_pod`] makes at most before it says a pod
/// never answered. IPVS's rr reaches every pod within a round, but the
/// localhost NodePorts choose an endpoint at random (`numgen random`, as
/// kube-proxy's iptables and nftables modes): 8 flows missed one of two
/// pods once in 128 calls (CI, 6.1, stop 41). 40 flows miss one of two
/// pods with a chance of 2^-39, one of three 3 x (2/3)^40, about 10^-7;
/// a table that really never reaches a pod costs 40 local flows to say so.
pub const EACH_POD_TRIES: usize = 40;

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

/// One TCP connection to `to` from the caller's namespace; what the pod
/// said it saw.
pub fn tcp_flow(to: SocketAddr) -> io::Result<Seen> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Seen::parse(&text)
}

/// One UDP exchange with `to` from the caller's namespace; what the pod
/// said it saw.
pub fn udp_flow(to: SocketAddr) -> io::Result<Seen> {
    let any: SocketAddr = if to.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = UdpSocket::bind(any)?;
    sock.set_read_timeout(Some(Duration::from_secs(3)))?;
    sock.connect(to)?;
    sock.send(b"who am i\n")?;
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf)?;
    Seen::parse(&String::from_utf8_lossy(&buf[..n]))
}

/// `GET path` over HTTP/1.1 (`Connection: close`) to `to`: the status code
/// and the body.
pub fn http_get(to: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    let bad = || io::Error::other(format!("bad HTTP reply {reply:?}"));
    let (head, body) = reply.split_once("\r\n\r\n").ok_or_else(bad)?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    Ok((code, body.to_owned()))
}

/// Starts the live `ipvsadm-rs --from-k8s` on node1 as the lab's tests run
/// it ([`Live::start`] with `dir`): node1's address and name, the cluster
/// CIDR, the sysctls set (`net.ipv4.vs.conntrack=1`, which the node's own
/// connections need to be masqueraded), no periodic resync within a test;
/// then `extra`.
pub fn start_on_node1(dir: &Path, extra: &[&str]) -> Live {
    let mut args = vec![
        "--node-ip",
        NODE1,
        "--node-name",
        "node1",
        "--cluster-cidr",
        CLUSTER_CIDR,
        "--set-sysctls",
        "--resync",
        "3600",
    ];
    args.extend_from_slice(extra);
    Live::start(dir, &args)
}
