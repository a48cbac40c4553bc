//! Helpers for tests that run inside the VM (see `vm-tests/run.sh`).
//!
//! Each test carries `#[cfg_attr(not(test_vm), ignore = "runs in the test
//! VM: vm-tests/run.sh tests")]`: a host build lists it as ignored with that
//! line; the VM's build (`VM_TESTS_BUILD=1`, see `build.rs`) has no such
//! attribute, and `vm-tests/scripts/build.sh` refuses a binary that has.
//!
//! The VM runs each test binary as root with `--test-threads=1` and these
//! environment variables:
//! - `IPVSADM`: Debian's ipvsadm 1.31, the reference;
//! - `IPVSADM_RS`: our `ipvsadm-rs`;
//! - `NFT`: Debian's nft 1.0.6, at [`NFT_PATH`].

pub mod cluster;
pub mod exporter;
pub mod lab;
pub mod live;
pub mod rawfloor;
pub mod screenshot;
pub mod traffic;

use std::ffi::OsStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Output};

/// Path of the real ipvsadm, from `$IPVSADM`.
pub fn ipvsadm() -> PathBuf {
    tool_from_env("IPVSADM")
}

/// Path of our ipvsadm-rs, from `$IPVSADM_RS`.
pub fn ipvsadm_rs() -> PathBuf {
    tool_from_env("IPVSADM_RS")
}

/// Where the VM holds Debian's nft (nftables 1.0.6): staged into the base
/// initramfs by `vm-tests/scripts/initramfs.sh` (`stage_nft`).
pub const NFT_PATH: &str = "/usr/sbin/nft";

/// Path of Debian's nft, from `$NFT` or else [`NFT_PATH`]; panics with
/// where it should come from when it is missing.
pub fn nft() -> PathBuf {
    let path = std::env::var_os("NFT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(NFT_PATH));
    assert!(
        path.is_file(),
        "nft is missing: no {} in the VM (Debian's nftables is staged at {NFT_PATH} by \
         vm-tests/scripts/initramfs.sh, stage_nft; rebuild the base initramfs)",
        path.display()
    );
    path
}

/// Runs `nft` with `args` and `stdin` (for `-f -`) in the caller's network
/// namespace; its outcome.
pub fn nft_run(args: &[&str], stdin: &str) -> Outcome {
    run_as(&nft(), "nft", args, stdin.as_bytes())
}

/// Runs `nft` with `args` and `stdin`, which must succeed; its stdout.
pub fn nft_ok(args: &[&str], stdin: &str) -> String {
    let out = nft_run(args, stdin);
    assert_eq!(out.code, Some(0), "nft {args:?} failed:\n{out}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tool_from_env(var: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("${var} is not set: vm-tests run inside the VM, through vm-tests/run.sh")
    });
    assert!(
        path.is_file(),
        "${var} names {}, which does not exist",
        path.display()
    );
    path
}

/// Runs `tool` with `args` and returns its output; panics if it cannot start.
pub fn run<I, S>(tool: &PathBuf, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()))
}

/// Moves the calling thread into a new, empty network namespace with `lo` up.
///
/// Namespaces belong to threads, so this isolates the current test (libtest
/// runs each test on its own thread): netlink sockets it opens and processes
/// it spawns see a fresh, empty IPVS table.
pub fn enter_fresh_netns() -> io::Result<()> {
    // SAFETY: unshare takes no pointers.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    set_loopback_up()
}

/// `struct ifreq` restricted to the name and the flags (40 bytes on Linux).
#[repr(C)]
struct IfreqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn set_loopback_up() -> io::Result<()> {
    // SAFETY: plain socket call; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut req = IfreqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: req is a valid, writable ifreq-sized buffer for both ioctls.
    let result = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req) < 0 {
            Err(io::Error::last_os_error())
        } else {
            req.flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &mut req) < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: fd is ours and still open.
    unsafe { libc::close(fd) };
    result
}

/// What one run of a tool gave: exit code, stdout, stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code,
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr)
        )
    }
}

/// Runs `tool` with `argv[0]` set to `argv0` (so that both tools print the
/// same program name in their messages), `args`, and `stdin` as input.
pub fn run_as(tool: &PathBuf, argv0: &str, args: &[&str], stdin: &[u8]) -> Outcome {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let mut child = Command::new(tool)
        .arg0(argv0)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    if let Some(mut input) = child.stdin.take() {
        // A tool that does not read its input closes the pipe early.
        let _ = input.write_all(stdin);
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("cannot wait for {}: {e}", tool.display()));
    Outcome {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

/// A line diff of two texts: `-` lines only in `a`, `+` lines only in
/// `b`, and two lines of context (from a longest common subsequence).
pub fn diff(a: &str, b: &str) -> String {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(('+', b[j]));
            j += 1;
        } else {
            ops.push(('-', a[i]));
            i += 1;
        }
    }
    let near = |k: usize| {
        ops[k.saturating_sub(2)..(k + 3).min(ops.len())]
            .iter()
            .any(|(c, _)| *c != ' ')
    };
    ops.iter()
        .enumerate()
        .filter(|(k, _)| near(*k))
        // Trailing blanks matter in ipvsadm's output: show them.
        .map(|(_, (c, l))| format!("{c} {}\n", l.replace(' ', "·")))
        .collect()
}

/// Runs a busybox-style command line (`sh -c`) in the caller's network
/// namespace and panics with its output if it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .unwrap_or_else(|e| panic!("cannot run sh -c {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "`{cmd}` failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A second network namespace, kept alive by a `sleep` process started
/// with `unshare -n`; the process is killed (by its pid) on drop.
pub struct Netns {
    child: std::process::Child,
}

impl Netns {
    /// A new, empty network namespace with `lo` up.
    pub fn new() -> Self {
        let child = Command::new("unshare")
            .args(["-n", "sleep", "100000"])
            .spawn()
            .expect("cannot start `unshare -n sleep`");
        let ns = Netns { child };
        // unshare has run once /proc/PID/ns/net differs from ours.
        let ours = std::fs::read_link("/proc/thread-self/ns/net").expect("our namespace");
        for _ in 0..1000 {
            match std::fs::read_link(ns.path()) {
                Ok(theirs) if theirs != ours => {
                    ns.sh("ip link set lo up");
                    return ns;
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        panic!("unshare -n did not create a namespace");
    }

    /// The pid of the process holding the namespace.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `/proc/PID/ns/net`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    /// Runs `cmd` with `sh -c` inside the namespace (busybox nsenter).
    pub fn sh(&self, cmd: &str) -> String {
        sh(&format!("nsenter -t {} -n sh -c '{}'", self.pid(), cmd))
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Joins the caller's namespace to `peer` with a veth pair: `here` in the
/// caller's namespace with `here_addr` (CIDR), `there` in `peer` with
/// `there_addr`, both up. busybox `ip` cannot name the peer, so the pair
/// is made with the kernel's `vethN` name and renamed.
pub fn veth(here: &str, here_addr: &str, peer: &Netns, there: &str, there_addr: &str) {
    sh(&format!(
        "ip link add name {here} type veth && \
         peer=$(ip -o link | sed -n 's/^[0-9]*: \\(veth[0-9]*\\)@.*/\\1/p' | head -n1) && \
         ip link set \"$peer\" name {there} && \
         ip link set {there} netns {pid} && \
         ip addr add {here_addr} dev {here} && ip link set {here} up",
        pid = peer.pid()
    ));
    peer.sh(&format!(
        "ip addr add {there_addr} dev {there} && ip link set {there} up"
    ));
}

/// Writes a sysctl of the caller's network namespace (`net/ipv4/ip_forward`).
pub fn sysctl(name: &str, value: &str) {
    let path = format!("/proc/sys/{name}");
    std::fs::write(&path, value).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
}

/// A director in the caller's namespace between a client namespace
/// (10.2.0.0/24) and a real-server namespace (10.1.0.0/24) with
/// `nc` servers on 10.1.0.2 ports 8080 and 8081 (each answers `hi`).
/// The director's link to the servers is `lab0`, theirs `rs0`.
pub struct Lab {
    /// The client namespace (10.2.0.2, default route via the director).
    pub client: Netns,
    /// The real-server namespace (10.1.0.2, default route via the director).
    pub server: Netns,
}

impl Lab {
    /// Builds the three namespaces' links and starts the servers.
    pub fn new() -> Self {
        let (client, server) = (Netns::new(), Netns::new());
        veth("lab0", "10.1.0.1/24", &server, "rs0", "10.1.0.2/24");
        veth("lab1", "10.2.0.1/24", &client, "cl0", "10.2.0.2/24");
        server.sh("ip route add default via 10.1.0.1");
        client.sh("ip route add default via 10.2.0.1");
        sysctl("net/ipv4/ip_forward", "1");
        for port in [8080, 8081] {
            server.sh(&format!(
                "nc -ll -p {port} -e echo hi >/dev/null 2>&1 & echo $! >>/tmp/lab-nc.pids"
            ));
        }
        Lab { client, server }
    }

    /// One connection from the client to `vip`; panics unless the real
    /// server answered.
    pub fn connect(&self, vip: &str) {
        let (addr, port) = vip.split_once(':').unwrap();
        // The server may still be starting: retry a refused connection.
        for _ in 0..100 {
            let out = self
                .client
                .sh(&format!("echo hello | nc -w 2 {addr} {port} || true"));
            if out.contains("hi") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("no answer through {vip}");
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::process::Command::new("sh")
            .args([
                "-c",
                &format!(
                    "nsenter -t {} -n sh -c 'kill $(cat /tmp/lab-nc.pids); rm -f /tmp/lab-nc.pids'",
                    self.server.pid()
                ),
            ])
            .status();
    }
}

/// A socket address from its text (test data, known good).
pub fn sa(s: &str) -> std::net::SocketAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("bad address {s:?} in a test: {e}"))
}

/// A handle in a fresh network namespace (this thread moves into it).
pub fn fresh_handle() -> ipvs_netlink::Handle {
    enter_fresh_netns().expect("cannot enter a fresh network namespace");
    ipvs_netlink::Handle::new().expect("IPVS must be available in the VM")
}

/// Runs the real ipvsadm with `args`, which must succeed; its stdout.
pub fn ipvsadm_ok(args: &[&str]) -> String {
    let out = run(&ipvsadm(), args);
    assert!(
        out.status.success(),
        "ipvsadm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("ipvsadm prints text")
}

/// A netlink socket (generic netlink) bound to a port the kernel picks,
/// connected to the kernel, with the smallest receive buffer; its port.
pub fn small_netlink_socket() -> (OwnedFd, u32) {
    // SAFETY: plain socket calls on a descriptor owned below; the
    // sockaddr_nl and int arguments are valid for their lengths.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_GENERIC,
        );
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let owned = OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_nl = std::mem::zeroed();
        addr.nl_family = libc::AF_NETLINK as _;
        let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        assert_eq!(
            libc::bind(fd, (&addr as *const libc::sockaddr_nl).cast(), len),
            0
        );
        assert_eq!(
            libc::connect(fd, (&addr as *const libc::sockaddr_nl).cast(), len),
            0
        );
        let mut bound: libc::sockaddr_nl = std::mem::zeroed();
        let mut blen = len;
        assert_eq!(
            libc::getsockname(fd, (&mut bound as *mut libc::sockaddr_nl).cast(), &mut blen),
            0
        );
        // The kernel raises it to its minimum (a few KiB).
        let size: libc::c_int = 0;
        assert_eq!(
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ),
            0
        );
        (owned, bound.nl_pid)
    }
}

/// A state file for one `--from-k8s` test, in a directory of its own
/// (emptied, mode 0755).
pub fn k8s_state(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("k8s-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    // Made here, 0755 whatever the umask: a state directory that others
    // may write is refused.
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755));
    dir.join("owned")
}

/// `ipvsadm-rs --from-k8s -` of the kubectl dump `dump` for node-a
/// (192.168.49.2) with the state file `state`, then `extra`.
pub fn from_k8s(dump: &str, state: &std::path::Path, extra: &[&str]) -> Outcome {
    let state = state.to_str().unwrap_or_default();
    let mut args = vec![
        "--from-k8s",
        "-",
        "--node-ip",
        "192.168.49.2",
        "--node-name",
        "node-a",
        "--state",
        state,
    ];
    args.extend_from_slice(extra);
    run_as(&ipvsadm_rs(), "ipvsadm-rs", &args, dump.as_bytes())
}
