//! A small network with real traffic through IPVS, inside the VM.
//!
//! ```text
//!  client netns            director (the test thread's netns)          server netns
//!  c0 10.0.1.2/24  <-veth->  c1 10.0.1.1/24     s1 10.244.0.1/16  <-veth->  s0 10.244.1.39/16
//!  default via 10.0.1.1      VIPs on lo, IPVS, ip_forward=1                    10.244.1.40/16
//!                                                                              10.244.2.33/16
//!                                                                default via 10.244.0.1
//! ```
//!
//! The real servers listen on every address of the server namespace:
//! busybox `nc -ll -p 80 -e cat` (an echo server, closing after the
//! client's FIN), and Rust threads for what nc cannot do: UDP echo
//! (busybox nc has no UDP), a server that never closes and one that
//! closes at once. Clients are sockets made in the client namespace.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// A network namespace kept alive by a thread parked in it.
pub struct Netns {
    path: String,
    _stop: mpsc::Sender<()>,
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Netns {
    /// A new namespace with `lo` up.
    pub fn new() -> io::Result<Netns> {
        let (tid_tx, tid_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        thread::spawn(move || {
            let made = crate::enter_fresh_netns().map(|()| {
                // SAFETY: gettid takes no arguments.
                unsafe { libc::gettid() }
            });
            let ok = made.is_ok();
            let _ = tid_tx.send(made);
            if ok {
                // Parked until the Netns is dropped.
                let _ = stop_rx.recv();
            }
        });
        let tid = tid_rx
            .recv()
            .map_err(|_| io::Error::other("namespace thread died"))??;
        Ok(Netns {
            path: format!("/proc/{}/task/{tid}/ns/net", std::process::id()),
            _stop: stop_tx,
        })
    }

    /// The namespace's file, for `nsenter --net=` and `setns`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The id of the thread that holds the namespace (for `ip link set
    /// ... netns`).
    pub fn tid(&self) -> &str {
        self.path
            .split('/')
            .nth(4)
            .unwrap_or_else(|| panic!("bad namespace path {}", self.path))
    }

    /// Runs `f` on a new thread inside this namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        let file =
            File::open(&self.path).unwrap_or_else(|e| panic!("cannot open {}: {e}", self.path));
        thread::spawn(move || {
            // SAFETY: setns on a namespace file we hold open; it only
            // changes this new thread's network namespace.
            check(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) })
                .unwrap_or_else(|e| panic!("setns: {e}"));
            f()
        })
    }

    /// Runs `f` inside this namespace and returns its result.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f)
            .join()
            .unwrap_or_else(|_| panic!("a thread in {} panicked", self.path))
    }

    /// Runs a shell line inside this namespace; panics unless it
    /// succeeds.
    pub fn sh(&self, line: &str) {
        sh(&format!("nsenter --net={} sh -c '{line}'", self.path));
    }
}

/// Runs a shell line in the caller's namespace; panics unless it
/// succeeds.
pub fn sh(line: &str) {
    let out = Command::new("sh")
        .args(["-c", line])
        .output()
        .unwrap_or_else(|e| panic!("cannot run sh: {e}"));
    assert!(
        out.status.success(),
        "`{line}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The real-server addresses of the server namespace.
pub const REALS: [&str; 3] = ["10.244.1.39", "10.244.1.40", "10.244.2.33"];
/// The client's address.
pub const CLIENT: &str = "10.0.1.2";

/// Server ports: busybox nc echo.
pub const ECHO: u16 = 80;
/// Server port: reads, never closes.
pub const HOLD: u16 = 7001;
/// Server port: closes as soon as it accepts.
pub const SLAM: u16 = 7002;
/// Server ports: UDP echo.
pub const UDP_PORTS: [u16; 2] = [53, 5060];

/// The three namespaces and what runs in them.
pub struct Lab {
    /// The clients' namespace.
    pub client: Netns,
    /// The real servers' namespace.
    pub server: Netns,
    nc: Child,
    /// Client sockets kept open so that their connections stay.
    pub held: Vec<TcpStream>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.nc.kill();
        let _ = self.nc.wait();
    }
}

/// The name of the veth peer the kernel gave the new link `name`
/// (busybox `ip` ignores `peer name`).
fn veth_peer(name: &str) -> String {
    let out = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let suffix = format!("@{name}:");
    text.split_whitespace()
        .find_map(|w| w.strip_suffix(&suffix))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no veth peer of {name} in:\n{text}"))
}

impl Lab {
    /// Makes the caller's thread the director (a fresh namespace with
    /// forwarding on and `vips` on lo) and builds the client and server
    /// namespaces with their servers running.
    pub fn new(vips: &[&str]) -> Lab {
        crate::enter_fresh_netns().unwrap_or_else(|e| panic!("unshare: {e}"));
        let client = Netns::new().unwrap_or_else(|e| panic!("client netns: {e}"));
        let server = Netns::new().unwrap_or_else(|e| panic!("server netns: {e}"));
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .unwrap_or_else(|e| panic!("ip_forward: {e}"));
        for (here, there, ns) in [("c1", "c0", &client), ("s1", "s0", &server)] {
            sh(&format!("ip link add {here} type veth"));
            let peer = veth_peer(here);
            sh(&format!("ip link set {peer} netns {}", ns.tid()));
            ns.sh(&format!(
                "ip link set {peer} name {there} && ip link set {there} up"
            ));
            sh(&format!("ip link set {here} up"));
        }
        sh("ip addr add 10.0.1.1/24 dev c1 && ip addr add 10.244.0.1/16 dev s1");
        for vip in vips {
            sh(&format!("ip addr add {vip}/32 dev lo"));
        }
        client.sh(&format!(
            "ip addr add {CLIENT}/24 dev c0 && ip route add default via 10.0.1.1"
        ));
        for real in REALS {
            server.sh(&format!("ip addr add {real}/16 dev s0"));
        }
        server.sh("ip route add default via 10.244.0.1");

        let nc = Command::new("nsenter")
            .arg(format!("--net={}", server.path()))
            .args(["nc", "-ll", "-p", &ECHO.to_string(), "-e", "cat"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start busybox nc: {e}"));
        server.run(|| {
            // Wait until nc listens (it answers, through loopback).
            for _ in 0..500 {
                if echo_once(&SocketAddr::from(([127, 0, 0, 1], ECHO))).is_ok() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            panic!("busybox nc never listened on port {ECHO}");
        });
        let listeners = server.run(|| {
            let tcp = |port: u16| {
                TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|e| panic!("bind {port}: {e}"))
            };
            let udp = UDP_PORTS.map(|port| {
                UdpSocket::bind(("0.0.0.0", port)).unwrap_or_else(|e| panic!("bind {port}: {e}"))
            });
            (tcp(HOLD), tcp(SLAM), udp)
        });
        let (hold, slam, udp) = listeners;
        thread::spawn(move || {
            let mut kept = Vec::new();
            for mut s in hold.incoming().map_while(Result::ok) {
                let mut buf = [0u8; 64];
                let _ = s.read(&mut buf);
                kept.push(s);
            }
        });
        thread::spawn(move || {
            for s in slam.incoming().map_while(Result::ok) {
                drop(s);
            }
        });
        for sock in udp {
            thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while let Ok((n, peer)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], peer);
                }
            });
        }
        Lab {
            client,
            server,
            nc,
            held: Vec::new(),
        }
    }

    /// Connects from the client namespace to `vip` and runs `then` on
    /// the stream there; the stream is kept when `then` returns it.
    pub fn tcp(&mut self, vip: SocketAddr, then: fn(&mut TcpStream) -> bool) -> io::Result<()> {
        let (keep, stream) = self.client.run(move || {
            let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(5))?;
            let keep = then(&mut s);
            Ok::<_, io::Error>((keep, s))
        })?;
        if keep {
            self.held.push(stream);
        }
        Ok(())
    }

    /// Sends `payload` from the client namespace to `vip` over UDP and
    /// waits for the echo.
    pub fn udp(&self, vip: SocketAddr, payload: &'static [u8]) -> io::Result<Vec<u8>> {
        self.client.run(move || {
            let sock = UdpSocket::bind("0.0.0.0:0")?;
            sock.set_read_timeout(Some(Duration::from_secs(10)))?;
            sock.send_to(payload, vip)?;
            let mut buf = [0u8; 2048];
            let n = sock.recv(&mut buf)?;
            Ok(buf[..n].to_vec())
        })
    }

    /// A SYN that no server will answer (the destination is not on the
    /// link): the connection stays in SYN_RECV on the director.
    pub fn unanswered_syn(&self, vip: SocketAddr) {
        self.client.run(move || {
            let _ = TcpStream::connect_timeout(&vip, Duration::from_millis(300));
        });
    }
}

/// One echo exchange with the server at `addr`, then a full close.
pub fn echo_once(addr: &SocketAddr) -> io::Result<()> {
    let mut s = TcpStream::connect_timeout(addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"ping\n")?;
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf)?;
    s.shutdown(Shutdown::Write)?;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)?;
    Ok(())
}

/// Runs `tool` with `argv[0]` `argv0` and `args` in a private mount
/// namespace where /proc is `fake_proc` (a directory holding
/// `net/ip_vs_conn`), so that `-c` reads a frozen connection table.
pub fn run_with_proc(
    tool: &std::path::Path,
    argv0: &str,
    args: &[&str],
    fake_proc: &std::path::Path,
) -> crate::Outcome {
    use std::ffi::CString;
    use std::os::unix::process::CommandExt;
    let src = CString::new(fake_proc.as_os_str().as_encoded_bytes())
        .unwrap_or_else(|e| panic!("bad path: {e}"));
    let mut cmd = Command::new(tool);
    cmd.arg0(argv0).args(args).stdin(Stdio::null());
    // SAFETY: only async-signal-safe system calls between fork and exec;
    // the strings are allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                src.as_ptr(),
                c"/proc".as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ))?;
            Ok(())
        });
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    crate::Outcome {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// The table the counter tests load (top.rs, examples.rs): a TCP service
/// of two real servers (busybox nc echo), a UDP one of one (the lab's UDP
/// echo), and one without traffic.
pub const COUNTED_TABLE: &[&str] = &[
    "-A -t 10.97.97.97:80 -s rr",
    "-a -t 10.97.97.97:80 -r 10.244.1.39:80 -m",
    "-a -t 10.97.97.97:80 -r 10.244.1.40:80 -m -w 3",
    "-A -u 10.97.97.97:53 -s rr",
    "-a -u 10.97.97.97:53 -r 10.244.2.33:53 -m",
    "-A -t 10.97.97.98:443 -s wlc",
    "-a -t 10.97.97.98:443 -r 10.244.1.39:443 -m",
];

/// Counters of a service or real server: conns, in/out packets, in/out
/// bytes. Keys: `TCP 10.97.97.97:80` for a service, that then
/// ` -> 10.244.1.39:80` for a real server.
pub type Counters = std::collections::BTreeMap<String, [u64; 5]>;

/// Runs the real ipvsadm on each line of `lines`, which must succeed.
pub fn ipvsadm_lines(lines: &[&str]) {
    for line in lines {
        let args: Vec<&str> = line.split_whitespace().collect();
        let out = crate::run_as(&crate::ipvsadm(), "ipvsadm", &args, b"");
        assert_eq!(out.code, Some(0), "`ipvsadm {line}` failed:\n{out}");
    }
}

/// The counters as the real ipvsadm lists them (`-Ln --stats --exact`).
pub fn kernel_counters() -> Counters {
    let out = crate::run_as(
        &crate::ipvsadm(),
        "ipvsadm",
        &["-Ln", "--stats", "--exact"],
        b"",
    );
    assert_eq!(out.code, Some(0), "{out}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut counters = Counters::new();
    let mut service = String::new();
    for line in text.lines().skip(3) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (key, numbers) = match words.as_slice() {
            ["->", addr, rest @ ..] => (format!("{service} -> {addr}"), rest),
            [prot, addr, rest @ ..] => {
                service = format!("{prot} {addr}");
                (service.clone(), rest)
            }
            _ => panic!("a line of -Ln --stats --exact: {line:?}"),
        };
        let n: Vec<u64> = numbers
            .iter()
            .map(|w| w.parse().unwrap_or_else(|e| panic!("{w} in {line:?}: {e}")))
            .collect();
        counters.insert(key, n.try_into().unwrap_or_else(|n| panic!("{n:?}")));
    }
    counters
}

/// Waits until the kernel's counters hold the traffic made: the TCP and
/// UDP services of [`COUNTED_TABLE`] count `tcp` and `udp` connections,
/// and two reads more than an estimator period (2 s) apart agree. Polls;
/// never fails on a clock.
pub fn settled(tcp: u64, udp: u64) -> Counters {
    let mut last = Counters::new();
    for _ in 0..100 {
        let now = kernel_counters();
        let counted = now["TCP 10.97.97.97:80"][0] == tcp && now["UDP 10.97.97.97:53"][0] == udp;
        if counted && now == last {
            return now;
        }
        last = now;
        thread::sleep(Duration::from_millis(2500));
    }
    panic!("the counters never settled at {tcp} TCP and {udp} UDP connections:\n{last:#?}");
}

/// `n` echo exchanges over TCP and `n` UDP echoes through the services of
/// [`COUNTED_TABLE`], each from a port of its own: a connection each.
pub fn echo_traffic(lab: &Lab, n: usize) {
    for _ in 0..n {
        lab.client
            .run(|| echo_once(&"10.97.97.97:80".parse().unwrap()))
            .unwrap_or_else(|e| panic!("echo through 10.97.97.97:80: {e}"));
        let echo = lab
            .udp("10.97.97.97:53".parse().unwrap(), b"query")
            .unwrap_or_else(|e| panic!("UDP echo: {e}"));
        assert_eq!(echo, b"query");
    }
}
