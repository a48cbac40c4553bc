//! ipvsadm's `parse_options` and the checks of `process_options`: argv to
//! a command entry, with every message and exit code of 1.31.

use std::net::{IpAddr, Ipv4Addr};

use super::cparse::{
    atoi, host_to_addr, inet_aton, inet_pton4, inet_pton6, parse_fwmark, service_to_port,
    string_to_number,
};
#[cfg(test)]
use super::options::VERSION_LINE;
use super::options::{is_ipvsadm, optc, usage, version, Opt, IPVSADM, OPTNAMES};
use super::popt::Popt;
use crate::format::fmt;

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u16 = 6;
pub const IPPROTO_UDP: u16 = 17;
pub const IPPROTO_SCTP: u16 = 132;

pub const SVC_F_PERSISTENT: u32 = 0x1;
pub const SVC_F_ONEPACKET: u32 = 0x4;
pub const SVC_F_SCHED1: u32 = 0x8;
pub const SVC_F_SCHED2: u32 = 0x10;
pub const SVC_F_SCHED3: u32 = 0x20;

pub const CONN_F_MASQ: u32 = 0;
pub const CONN_F_TUNNEL: u32 = 2;
pub const CONN_F_DROUTE: u32 = 3;

/// A bare `-p` (`IPVS_SVC_PERSISTENT_TIMEOUT`).
pub const DEFAULT_PERSISTENCE: u32 = 360;
/// The longest timeout 1.31 takes (31 days).
pub(crate) const MAX_TIMEOUT: i64 = 86400 * 31;

/// The commands, in ipvsadm's order (their index is the row of the
/// option table and of `cmdnames`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    SetTimeouts,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
}

const CMDNAMES: [&str; 14] = [
    "add-service",
    "edit-service",
    "delete-service",
    "flush",
    "list",
    "add-server",
    "delete-server",
    "edit-server",
    "set",
    "start-daemon",
    "stop-daemon",
    "restore",
    "save",
    "zero",
];

/// `commands_v_options`: per command, per option bit: `+` needed, `x`
/// illegal, `1` mutually exclusive, ` ` optional.
// Columns: -n -c svc -s -p -M -r fwd -w -x -y -mc tot dmn -st -rt thr -pc
// srt sid -ex ops -pe -b grp port ttl size tinf type tprt nocs csum remc.
const COMMANDS_V_OPTIONS: [&str; 14] = [
    "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx",
    "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx",
    "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    " 11xxxxxxxxx11       xxxxxxx xxxxx",
    "xx+xxx+    xxxxxxxxxxxxxxxxxx     ",
    "xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "xx+xxx+    xxxxxxxxxxxxxxxxxx     ",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "xxxxxxxxxxx xxxxxxx xxxx    xxxxxx",
    "xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxx",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    " xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

const TUNNAMES: [&str; 3] = ["ipip", "gue", "gre"];
/// `tunnel_types_v_options` over (tun-port, nocsum, csum, remcsum).
const TUN_OPTS: [u8; 4] = [
    optc::TUN_PORT,
    optc::TUN_NOCSUM,
    optc::TUN_CSUM,
    optc::TUN_REMCSUM,
];
const TUNNEL_TYPES_V_OPTIONS: [&str; 3] = ["xxxx", "+111", "x11x"];

/// A virtual service as the command line gives it (`ipvs_service_t`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvcArgs {
    pub af: u16,
    pub protocol: u16,
    pub addr: IpAddr,
    pub port: u16,
    pub fwmark: u32,
    pub sched_name: String,
    pub flags: u32,
    pub timeout: u32,
    /// IPv4: the mask's bytes as a host-order number; IPv6: a prefix.
    pub netmask: u32,
    pub pe_name: String,
}

impl SvcArgs {
    /// What a command line that names no service holds (ipvsadm's
    /// `ce.svc` before the options): the whole IPv4 netmask.
    pub fn unset() -> SvcArgs {
        SvcArgs {
            af: 0,
            protocol: 0,
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
            fwmark: 0,
            sched_name: String::new(),
            flags: 0,
            timeout: 0,
            netmask: 0xffff_ffff,
            pe_name: String::new(),
        }
    }
}

/// A real server as the command line gives it (`ipvs_dest_t`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestArgs {
    pub af: u16,
    pub addr: IpAddr,
    pub port: u16,
    pub conn_flags: u32,
    pub weight: i64,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub tun_type: u8,
    pub tun_port: u16,
    pub tun_flags: u16,
}

impl DestArgs {
    /// What a command line that names no real server holds: direct
    /// routing, weight 1.
    pub fn unset() -> DestArgs {
        DestArgs {
            af: 0,
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
            conn_flags: CONN_F_DROUTE,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            tun_type: 0,
            tun_port: 0,
            tun_flags: 0,
        }
    }
}

/// A sync daemon as the command line gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonArgs {
    pub state: u32,
    pub mcast_ifn: String,
    pub syncid: u32,
    pub sync_maxlen: u16,
    pub mcast_group: Option<IpAddr>,
    pub mcast_port: u16,
    pub mcast_ttl: u8,
}

/// Everything one ipvsadm invocation asks for (`ipvs_command_entry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub cmd: Cmd,
    pub svc: SvcArgs,
    pub dest: DestArgs,
    pub timeouts: [u32; 3],
    pub daemon: DaemonArgs,
    /// `OPT_*` bits, indexed by [`optc`].
    pub options: u64,
    /// `FMT_*` bits.
    pub format: u32,
}

impl Entry {
    /// Whether the option of bit `c` was given.
    pub fn has(&self, c: u8) -> bool {
        self.options & (1 << c) != 0
    }
}

/// Why an invocation stops before doing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The process ends (`exit()` in ipvsadm: `fail`, `tryhelp_exit`,
    /// `-h`, `-v`), even in the middle of a restore.
    Exit {
        stdout: String,
        stderr: String,
        code: i32,
    },
    /// A popt error after the command: the message is printed and the
    /// invocation returns -1 (a restore goes on with its next line).
    Return { stderr: String },
}

fn fail(msg: impl Into<String>) -> Stop {
    let mut stderr = msg.into();
    stderr.push('\n');
    Stop::Exit {
        stdout: String::new(),
        stderr,
        code: 2,
    }
}

/// ipvsadm's `tryhelp_exit(argv[0], -1)`.
pub fn try_help(prog: &str) -> Stop {
    Stop::Exit {
        stdout: String::new(),
        stderr: format!("Try `{prog} -h' or '{prog} --help' for more information.\n"),
        code: 255,
    }
}

const SERVICE_ADDR: u8 = 1;
const SERVICE_PORT: u8 = 2;

/// The address part of a service or server argument.
struct AddrPort {
    af: u16,
    addr: IpAddr,
    port: u16,
    v6_netmask: bool,
}

/// ipvsadm's `parse_service`: `host[:port]` or `[v6]:port`; the port may
/// be a name of `protocol`. Returns the result bits and what was read.
fn parse_service(buf: &str, protocol: u16) -> (u8, Option<AddrPort>) {
    if buf.bytes().all(|b| b.is_ascii_digit()) {
        return (0, None);
    }
    let mut host = buf;
    let mut port_str: Option<&str> = None;
    if let Some(rest) = buf.strip_prefix('[') {
        let Some(close) = rest.find(']') else {
            return (0, None);
        };
        let after = &rest[close + 1..];
        if !after.starts_with(':') {
            return (0, None);
        }
        host = &rest[..close];
        port_str = Some(&after[1..]);
    }
    let (af, addr, v6) = if let Some(a6) = inet_pton6(host) {
        (AF_INET6, IpAddr::V6(a6), true)
    } else {
        // The port after a bracket is forgotten here, as in 1.31:
        // `[1.2.3.4]:80` is an address without a port.
        port_str = None;
        if let Some(colon) = host.rfind(':') {
            port_str = Some(&host[colon + 1..]);
            host = &host[..colon];
        }
        match inet_aton(host).or_else(|| host_to_addr(host)) {
            Some(a4) => (AF_INET, IpAddr::V4(a4), false),
            None => return (0, None),
        }
    };
    let mut result = SERVICE_ADDR;
    let mut port = 0;
    if let Some(p) = port_str {
        result |= SERVICE_PORT;
        if let Some(n) = string_to_number(p, 0, 65535) {
            port = n as u16;
        } else {
            let proto = match protocol {
                IPPROTO_TCP => Some("tcp"),
                IPPROTO_UDP => Some("udp"),
                IPPROTO_SCTP => Some("sctp"),
                _ => None,
            };
            match proto.and_then(|pr| service_to_port(p, pr)) {
                Some(n) => port = n,
                None => return (0, None),
            }
        }
    }
    (
        result,
        Some(AddrPort {
            af,
            addr,
            port,
            v6_netmask: v6,
        }),
    )
}

fn parse_timeout(arg: Option<&str>, min: i64, max: i64) -> Result<u32, Stop> {
    match arg {
        None => Ok(DEFAULT_PERSISTENCE),
        Some(s) => string_to_number(s, min, max)
            .map(|v| v as u32)
            .ok_or_else(|| fail(format!("invalid timeout value `{s}' specified"))),
    }
}

pub(crate) fn parse_sched_flags(sched: &str, arg: &str) -> Result<u32, Stop> {
    let sched = if sched.is_empty() { "wlc" } else { sched };
    let mut flags = 0;
    let tokens: Vec<&str> = arg.split(',').filter(|t| !t.is_empty()).collect();
    if tokens.is_empty() {
        // strtok finds no token: 1.31 then dereferences NULL and crashes;
        // we refuse the argument instead.
        return Err(fail(format!("invalid scheduler flag `{arg}'")));
    }
    for flag in tokens {
        let (bit, needs) = match flag {
            "flag-1" => (SVC_F_SCHED1, None),
            "flag-2" => (SVC_F_SCHED2, None),
            "flag-3" => (SVC_F_SCHED3, None),
            "sh-fallback" => (SVC_F_SCHED1, Some("sh")),
            "sh-port" => (SVC_F_SCHED2, Some("sh")),
            "mh-fallback" => (SVC_F_SCHED1, Some("mh")),
            "mh-port" => (SVC_F_SCHED2, Some("mh")),
            _ => return Err(fail(format!("invalid scheduler flag `{flag}'"))),
        };
        flags |= bit;
        if needs.is_some_and(|s| s != sched) {
            return Err(fail(format!("incompatible scheduler flag `{flag}'")));
        }
    }
    Ok(flags)
}

/// Copies at most `n` bytes of `s` (strncpy into a fixed buffer).
fn clip(s: &str, n: usize) -> String {
    let mut out = s.to_owned();
    crate::format::truncate(&mut out, n);
    out
}

fn set_option(options: &mut u64, c: u8) -> Result<(), Stop> {
    let bit = 1u64 << c;
    if *options & bit != 0 {
        return Err(fail(format!(
            "multiple '{}' options specified",
            OPTNAMES[c as usize]
        )));
    }
    *options |= bit;
    Ok(())
}

/// Parses the arguments after `argv[0]` as ipvsadm 1.31 does.
pub fn parse(prog: &str, args: &[String]) -> Result<Entry, Stop> {
    let mut popt = Popt::new(IPVSADM, args);
    let mut e = Entry {
        cmd: Cmd::List,
        svc: SvcArgs::unset(),
        dest: DestArgs::unset(),
        timeouts: [0; 3],
        daemon: DaemonArgs::default(),
        options: 0,
        format: 0,
    };

    // The first option must be a command.
    let (spec, arg) = match popt.next_opt() {
        Some(Ok(x)) => x,
        _ => return Err(try_help(prog)),
    };
    e.cmd = match spec.opt {
        Opt::AddService => Cmd::Add,
        Opt::EditService => Cmd::Edit,
        Opt::DeleteService => Cmd::Del,
        Opt::AddServer => Cmd::AddDest,
        Opt::EditServer => Cmd::EditDest,
        Opt::DeleteServer => Cmd::DelDest,
        Opt::Clear => Cmd::Flush,
        Opt::List => Cmd::List,
        Opt::Zero => Cmd::Zero,
        Opt::Set => Cmd::SetTimeouts,
        Opt::Restore => Cmd::Restore,
        Opt::Save => Cmd::Save,
        Opt::StartDaemon | Opt::StopDaemon => {
            let start = spec.opt == Opt::StartDaemon;
            e.daemon.state = match arg {
                Some("master") => 1,
                Some("backup") => 2,
                _ if start => return Err(fail("illegal start-daemon parameter specified")),
                _ => return Err(fail("illegal start_daemon specified")),
            };
            if start {
                Cmd::StartDaemon
            } else {
                Cmd::StopDaemon
            }
        }
        Opt::Help => {
            return Err(Stop::Exit {
                stdout: usage(prog),
                stderr: String::new(),
                code: 0,
            })
        }
        Opt::Version => {
            return Err(Stop::Exit {
                stdout: version(prog),
                stderr: String::new(),
                code: 0,
            })
        }
        _ => return Err(try_help(prog)),
    };

    let mut sched_flags_arg = String::new();
    while let Some(next) = popt.next_opt() {
        let (spec, arg) = match next {
            Ok(x) => x,
            Err(err) => {
                return Err(Stop::Return {
                    stderr: format!("{}: {}\n", err.bad_option, err.strerror()),
                })
            }
        };
        let a = arg.unwrap_or("");
        let o = &mut e.options;
        match spec.opt {
            Opt::TcpService | Opt::UdpService | Opt::SctpService => {
                set_option(o, optc::SERVICE)?;
                e.svc.protocol = match spec.opt {
                    Opt::TcpService => IPPROTO_TCP,
                    Opt::UdpService => IPPROTO_UDP,
                    _ => IPPROTO_SCTP,
                };
                let (bits, parsed) = parse_service(a, e.svc.protocol);
                match parsed {
                    Some(p) if bits & SERVICE_ADDR != 0 => {
                        e.svc.af = p.af;
                        e.svc.addr = p.addr;
                        if p.v6_netmask {
                            e.svc.netmask = 128;
                        }
                        if bits & SERVICE_PORT != 0 {
                            e.svc.port = p.port;
                        }
                    }
                    _ => return Err(fail("illegal virtual server address[:port] specified")),
                }
            }
            Opt::FwmarkService => {
                set_option(o, optc::SERVICE)?;
                e.svc.af = AF_INET;
                e.svc.protocol = IPPROTO_TCP;
                e.svc.fwmark = parse_fwmark(a)
                    .ok_or_else(|| fail(format!("invalid fwmark value `{a}' specified")))?;
            }
            Opt::Scheduler => {
                set_option(o, optc::SCHEDULER)?;
                e.svc.sched_name = clip(a, 15);
            }
            Opt::Persistent => {
                set_option(o, optc::PERSISTENT)?;
                e.svc.flags |= SVC_F_PERSISTENT;
                e.svc.timeout = parse_timeout(arg, 1, MAX_TIMEOUT)?;
            }
            Opt::Netmask => {
                set_option(o, optc::NETMASK)?;
                if e.svc.af != AF_INET6 {
                    let mask = inet_aton(a)
                        .or_else(|| host_to_addr(a))
                        .ok_or_else(|| fail("illegal virtual server persistent mask specified"))?;
                    e.svc.netmask = u32::from(mask);
                } else {
                    let n = atoi(a);
                    if !(1..=128).contains(&n) {
                        return Err(fail("illegal ipv6 netmask specified"));
                    }
                    e.svc.netmask = n as u32;
                }
            }
            Opt::RealServer => {
                set_option(o, optc::SERVER)?;
                let (bits, parsed) = parse_service(a, e.svc.protocol);
                match parsed {
                    Some(p) if bits & SERVICE_ADDR != 0 => {
                        e.dest.af = p.af;
                        e.dest.addr = p.addr;
                        // Without a port, the service's (as far as it is
                        // known at this point).
                        e.dest.port = if bits == SERVICE_ADDR {
                            e.svc.port
                        } else {
                            p.port
                        };
                    }
                    _ => return Err(fail("illegal real server address[:port] specified")),
                }
            }
            Opt::Ipip | Opt::Gatewaying | Opt::Masquerading => {
                set_option(o, optc::FORWARD)?;
                e.dest.conn_flags = match spec.opt {
                    Opt::Ipip => CONN_F_TUNNEL,
                    Opt::Gatewaying => CONN_F_DROUTE,
                    _ => CONN_F_MASQ,
                };
            }
            Opt::Weight => {
                set_option(o, optc::WEIGHT)?;
                // Debian's 1.31 takes weights up to INT_MAX.
                e.dest.weight = string_to_number(a, 0, i64::from(i32::MAX))
                    .ok_or_else(|| fail("illegal weight specified"))?;
            }
            Opt::UThreshold => {
                set_option(o, optc::UTHRESHOLD)?;
                e.dest.u_threshold = string_to_number(a, 0, i64::from(i32::MAX))
                    .ok_or_else(|| fail("illegal u_threshold specified"))?
                    as u32;
            }
            Opt::LThreshold => {
                set_option(o, optc::LTHRESHOLD)?;
                e.dest.l_threshold = string_to_number(a, 0, i64::from(i32::MAX))
                    .ok_or_else(|| fail("illegal l_threshold specified"))?
                    as u32;
            }
            Opt::Connection => set_option(o, optc::CONNECTION)?,
            Opt::Numeric => {
                set_option(o, optc::NUMERIC)?;
                e.format |= fmt::NUMERIC;
            }
            Opt::McastInterface => {
                set_option(o, optc::MCAST)?;
                e.daemon.mcast_ifn = clip(a, 15);
            }
            Opt::SyncId => {
                set_option(o, optc::SYNCID)?;
                e.daemon.syncid = string_to_number(a, 0, 255)
                    .ok_or_else(|| fail("illegal syncid specified"))?
                    as u32;
            }
            Opt::Timeout => set_option(o, optc::TIMEOUT)?,
            Opt::Daemon => set_option(o, optc::DAEMON)?,
            Opt::Stats => {
                set_option(o, optc::STATS)?;
                e.format |= fmt::STATS;
            }
            Opt::Rate => {
                set_option(o, optc::RATE)?;
                e.format |= fmt::RATE;
            }
            Opt::Thresholds => {
                set_option(o, optc::THRESHOLDS)?;
                e.format |= fmt::THRESHOLDS;
            }
            Opt::PersistentConn => {
                set_option(o, optc::PERSISTENTCONN)?;
                e.format |= fmt::PERSISTENTCONN;
            }
            Opt::NoSort => {
                set_option(o, optc::NOSORT)?;
                e.format |= fmt::NOSORT;
            }
            Opt::Sort => {}
            Opt::Exact => {
                set_option(o, optc::EXACT)?;
                e.format |= fmt::EXACT;
            }
            Opt::Ipv6 => {
                if e.svc.fwmark != 0 {
                    e.svc.af = AF_INET6;
                    e.svc.netmask = 128;
                } else {
                    return Err(fail("-6 used before -f\n"));
                }
            }
            Opt::Ops => {
                set_option(o, optc::ONEPACKET)?;
                e.svc.flags |= SVC_F_ONEPACKET;
            }
            Opt::Pe => {
                set_option(o, optc::PE)?;
                e.svc.pe_name = clip(a, 16);
            }
            Opt::SchedFlags => {
                set_option(o, optc::SCHED_FLAGS)?;
                sched_flags_arg = clip(a, 127);
            }
            Opt::McastGroup => {
                set_option(o, optc::MCAST_GROUP)?;
                if a.contains(':') {
                    match inet_pton6(a) {
                        Some(g) if g.is_multicast() => e.daemon.mcast_group = Some(IpAddr::V6(g)),
                        _ => return Err(fail(format!("invalid IPv6 mcast-group `{a}'"))),
                    }
                } else {
                    match inet_pton4(a) {
                        Some(g) if g.is_multicast() => e.daemon.mcast_group = Some(IpAddr::V4(g)),
                        _ => return Err(fail(format!("invalid IPv4 mcast-group `{a}'"))),
                    }
                }
            }
            Opt::McastPort => {
                set_option(o, optc::MCAST_PORT)?;
                e.daemon.mcast_port = string_to_number(a, 1, 65535)
                    .ok_or_else(|| fail("illegal mcast-port specified"))?
                    as u16;
            }
            Opt::McastTtl => {
                set_option(o, optc::MCAST_TTL)?;
                e.daemon.mcast_ttl = string_to_number(a, 1, 255)
                    .ok_or_else(|| fail("illegal mcast-ttl specified"))?
                    as u8;
            }
            Opt::SyncMaxlen => {
                set_option(o, optc::SYNC_MAXLEN)?;
                e.daemon.sync_maxlen = string_to_number(a, 1, 65535 - 20 - 8)
                    .ok_or_else(|| fail("illegal sync-maxlen specified"))?
                    as u16;
            }
            Opt::TunInfo => {
                set_option(o, optc::TUN_INFO)?;
                e.format |= fmt::TUN_INFO;
            }
            Opt::TunType => {
                set_option(o, optc::TUN_TYPE)?;
                e.dest.tun_type = TUNNAMES
                    .iter()
                    .position(|t| *t == a)
                    .ok_or_else(|| fail("illegal tunnel type specified"))?
                    as u8;
            }
            Opt::TunPort => {
                set_option(o, optc::TUN_PORT)?;
                e.dest.tun_port = string_to_number(a, 1, 65535)
                    .ok_or_else(|| fail("illegal tunnel port specified"))?
                    as u16;
            }
            Opt::TunNocsum => set_option(o, optc::TUN_NOCSUM)?,
            Opt::TunCsum => {
                set_option(o, optc::TUN_CSUM)?;
                e.dest.tun_flags |= 1;
            }
            Opt::TunRemcsum => {
                set_option(o, optc::TUN_REMCSUM)?;
                e.dest.tun_flags |= 2;
            }
            // A second command, -h or -v after the command.
            _ => return Err(fail(format!("invalid option `{}'", popt.bad_option()))),
        }
    }

    let mut leftovers = popt.leftovers().iter();
    if e.cmd == Cmd::SetTimeouts {
        let words: Vec<&str> = leftovers.by_ref().take(3).copied().collect();
        if words.len() < 3 {
            return Err(fail("--set option requires 3 timeout values"));
        }
        for (slot, w) in e.timeouts.iter_mut().zip(words) {
            *slot = parse_timeout(Some(w), 0, MAX_TIMEOUT)?;
        }
    }
    if let Some(extra) = leftovers.next() {
        return Err(fail(format!("unexpected argument {extra}")));
    }
    if !sched_flags_arg.is_empty() {
        e.svc.flags &= !(SVC_F_SCHED1 | SVC_F_SCHED2 | SVC_F_SCHED3);
        e.svc.flags |= parse_sched_flags(&e.svc.sched_name, &sched_flags_arg)?;
    }
    check(&mut e, !is_ipvsadm(prog))?;
    Ok(e)
}

/// `generic_opt_check` and the per-command checks of `process_options`.
/// `ours`: under a name other than `ipvsadm`, `-L` of one service takes
/// `-r` (list that real server alone), which 1.31 refuses.
fn check(e: &mut Entry, ours: bool) -> Result<(), Stop> {
    let one_server = ours && e.cmd == Cmd::List && e.has(optc::SERVICE);
    let row = COMMANDS_V_OPTIONS[e.cmd as usize].as_bytes();
    let name = CMDNAMES[e.cmd as usize];
    let mut first_exclusive: Option<usize> = None;
    for (j, rule) in row.iter().enumerate() {
        let given = e.options & (1 << j) != 0;
        match (given, rule) {
            (false, b'+') => {
                return Err(fail(format!(
                    "You need to supply the '{}' option for the '{name}' command",
                    OPTNAMES[j]
                )))
            }
            (true, b'x') if one_server && j == optc::SERVER as usize => {}
            (true, b'x') => {
                return Err(fail(format!(
                    "Illegal '{}' option with the '{name}' command",
                    OPTNAMES[j]
                )))
            }
            (true, b'1') => match first_exclusive {
                None => first_exclusive = Some(j),
                Some(last) => {
                    return Err(fail(format!(
                        "The option '{}' conflicts with the '{}' option in the '{name}' command",
                        OPTNAMES[j], OPTNAMES[last]
                    )))
                }
            },
            _ => {}
        }
    }

    if matches!(e.cmd, Cmd::Add | Cmd::Edit) {
        if e.svc.fwmark == 0 && e.svc.port == 0 && e.svc.flags & SVC_F_PERSISTENT == 0 {
            return Err(fail("Zero port specified for non-persistent service"));
        }
        if e.svc.flags & SVC_F_ONEPACKET != 0 && e.svc.fwmark == 0 && e.svc.protocol != IPPROTO_UDP
        {
            return Err(fail(
                "One-Packet Scheduling is only for UDP virtual services",
            ));
        }
        if e.svc.sched_name.is_empty() {
            e.svc.sched_name = "wlc".into();
        }
    }
    if e.cmd == Cmd::StartDaemon && e.daemon.mcast_ifn.is_empty() {
        e.daemon.mcast_ifn = "eth0".into();
    }
    let fwd = e.dest.conn_flags & 7;
    if matches!(e.cmd, Cmd::AddDest | Cmd::EditDest) {
        if e.svc.fwmark == 0 && (fwd == CONN_F_TUNNEL || fwd == CONN_F_DROUTE) {
            e.dest.port = e.svc.port;
        }
        if e.dest.af != e.svc.af && fwd != CONN_F_TUNNEL {
            return Err(fail(
                "Different address family is allowed only for tunneling servers",
            ));
        }
        let tunnel_opts = [
            optc::TUN_TYPE,
            optc::TUN_PORT,
            optc::TUN_NOCSUM,
            optc::TUN_CSUM,
            optc::TUN_REMCSUM,
        ];
        if tunnel_opts.iter().any(|c| e.has(*c)) && fwd != CONN_F_TUNNEL {
            return Err(fail("Tunnel options conflict with forward method"));
        }
        let tun = usize::from(e.dest.tun_type);
        let rules = TUNNEL_TYPES_V_OPTIONS[tun].as_bytes();
        let mut first: Option<u8> = None;
        for (j, rule) in rules.iter().enumerate() {
            let k = TUN_OPTS[j];
            let given = e.has(k);
            match (given, rule) {
                (false, b'+') => {
                    return Err(fail(format!(
                        "You need to supply the '{}' option for the '{}' tunnel type",
                        OPTNAMES[k as usize], TUNNAMES[tun]
                    )))
                }
                (true, b'x') => {
                    return Err(fail(format!(
                        "Illegal '{}' option with the '{}' tunnel type",
                        OPTNAMES[k as usize], TUNNAMES[tun]
                    )))
                }
                (true, b'1') => match first {
                    None => first = Some(k),
                    Some(last) => {
                        return Err(fail(format!(
                        "The option '{}' conflicts with the '{}' option in the '{}' tunnel type",
                        OPTNAMES[k as usize], OPTNAMES[last as usize], TUNNAMES[tun]
                    )))
                    }
                },
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Entry, Stop> {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        parse("ipvsadm", &args)
    }

    fn failure(line: &str) -> (String, i32) {
        match p(line) {
            Err(Stop::Exit { stderr, code, .. }) => (stderr, code),
            Err(Stop::Return { stderr }) => (stderr, -1),
            Ok(e) => panic!("`{line}` parsed: {e:?}"),
        }
    }

    #[test]
    fn add_service_defaults_and_bare_persistence() {
        let e = p("-A -t 10.0.0.1:80 -p").unwrap();
        assert_eq!(e.cmd, Cmd::Add);
        assert_eq!(e.svc.sched_name, "wlc");
        assert_eq!(e.svc.timeout, DEFAULT_PERSISTENCE);
        assert_eq!(e.svc.flags, SVC_F_PERSISTENT);
        assert_eq!(e.svc.netmask, 0xffff_ffff);
        assert_eq!((e.svc.protocol, e.svc.port), (IPPROTO_TCP, 80));
    }

    #[test]
    fn ipv6_service_and_netmask_order() {
        let e = p("-A -t [2001:db8::1]:443 -p 60 -M 64").unwrap();
        assert_eq!((e.svc.af, e.svc.netmask), (AF_INET6, 64));
        // -M before the IPv6 service is read as an IPv4 mask, then the
        // service resets it to 128.
        let e = p("-A -M 255.0.0.0 -t [2001:db8::1]:443 -p").unwrap();
        assert_eq!(e.svc.netmask, 128);
        assert_eq!(
            failure("-A -t [2001:db8::1]:443 -p -M 129").0,
            "illegal ipv6 netmask specified\n"
        );
    }

    #[test]
    fn a_bracketed_ipv4_address_loses_its_port_as_in_1_31() {
        // 1.31 keeps the port after `]` only for an IPv6 address; for an
        // IPv4 one it looks for a colon inside the brackets, finds none.
        let bracketed = p("-A -t [1.2.3.4]:80").map(|e| (e.svc.addr, e.svc.port));
        let bare = p("-A -t 1.2.3.4").map(|e| (e.svc.addr, e.svc.port));
        assert_eq!(bracketed, bare);
        assert_eq!(
            p("-A -t [2001:db8::1]:80").unwrap().svc.port,
            80,
            "IPv6 keeps it"
        );
    }

    #[test]
    fn fwmark_and_ipv6_flag() {
        let e = p("-A -f 7 -6").unwrap();
        assert_eq!((e.svc.fwmark, e.svc.af, e.svc.netmask), (7, AF_INET6, 128));
        assert_eq!(failure("-A -6 -f 7"), ("-6 used before -f\n\n".into(), 2));
        assert_eq!(failure("-A -f 0").0, "invalid fwmark value `0' specified\n");
    }

    #[test]
    fn gatewaying_forces_the_service_port_and_real_server_defaults() {
        let e = p("-a -t 10.0.0.1:80 -r 10.0.0.2:8080 -g").unwrap();
        assert_eq!(e.dest.port, 80);
        let e = p("-a -t 10.0.0.1:80 -r 10.0.0.2:8080 -m").unwrap();
        assert_eq!(
            (e.dest.port, e.dest.weight, e.dest.conn_flags),
            (8080, 1, CONN_F_MASQ)
        );
        let e = p("-e -t 10.0.0.1:80 -r 10.0.0.2").unwrap();
        assert_eq!((e.dest.conn_flags, e.dest.port), (CONN_F_DROUTE, 80));
        // -r before -t: no service port known yet, then -m keeps 0.
        let e = p("-a -r 10.0.0.2 -t 10.0.0.1:80 -m").unwrap();
        assert_eq!(e.dest.port, 0);
    }

    #[test]
    fn command_option_matrix_messages() {
        assert_eq!(
            failure("-A"),
            (
                "You need to supply the 'service-address' option for the 'add-service' command\n"
                    .into(),
                2
            )
        );
        assert_eq!(
            failure("-D -t 10.0.0.1:80 -s rr").0,
            "Illegal 'scheduler' option with the 'delete-service' command\n"
        );
        assert_eq!(
            failure("-L -c -t 10.0.0.1:80").0,
            "The option 'service-address' conflicts with the 'connection' option in the 'list' command\n"
        );
        assert_eq!(
            failure("-A -t 10.0.0.1:80 -s rr -s wrr").0,
            "multiple 'scheduler' options specified\n"
        );
        assert_eq!(
            failure("-A -t 10.0.0.1").0,
            "Zero port specified for non-persistent service\n"
        );
        assert_eq!(
            failure("-A -t 10.0.0.1:80 -o").0,
            "One-Packet Scheduling is only for UDP virtual services\n"
        );
    }

    #[test]
    fn tunnel_rules() {
        assert_eq!(
            failure("-a -t 10.0.0.1:80 -r 10.0.0.2 -m --tun-type gue").0,
            "Tunnel options conflict with forward method\n"
        );
        assert_eq!(
            failure("-a -t 10.0.0.1:80 -r 10.0.0.2 -i --tun-type gue").0,
            "You need to supply the 'tun-port' option for the 'gue' tunnel type\n"
        );
        assert_eq!(
            failure("-a -t 10.0.0.1:80 -r 10.0.0.2 -i --tun-type gre --tun-port 9").0,
            "Illegal 'tun-port' option with the 'gre' tunnel type\n"
        );
        assert_eq!(
            failure("-a -t 10.0.0.1:80 -r 10.0.0.2 -i --tun-type gue --tun-port 9 --tun-csum --tun-remcsum").0,
            "The option 'tun-remcsum' conflicts with the 'tun-csum' option in the 'gue' tunnel type\n"
        );
        assert_eq!(
            failure("-a -t 10.0.0.1:80 -r [2001:db8::2]:80 -m").0,
            "Different address family is allowed only for tunneling servers\n"
        );
        assert!(p("-a -t 10.0.0.1:80 -r [2001:db8::2]:80 -i").is_ok());
    }

    #[test]
    fn scheduler_flags_are_checked_against_the_final_scheduler() {
        let e = p("-A -t 10.0.0.1:80 -b sh-port -s sh").unwrap();
        assert_eq!(e.svc.flags, SVC_F_SCHED2);
        assert_eq!(
            failure("-A -t 10.0.0.1:80 -b sh-port").0,
            "incompatible scheduler flag `sh-port'\n"
        );
        assert_eq!(
            failure("-A -t 10.0.0.1:80 -b nope").0,
            "invalid scheduler flag `nope'\n"
        );
    }

    #[test]
    fn popt_errors_and_try_help() {
        assert_eq!(
            failure("-n -L"),
            (
                "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n".into(),
                255
            )
        );
        assert_eq!(failure("-A -t"), ("-t: missing argument\n".into(), -1));
        assert_eq!(failure("-L -Q"), ("-Q: unknown option\n".into(), -1));
        assert_eq!(failure("-L -A").0, "invalid option `-A'\n");
        assert_eq!(
            failure("-L -w 5").0,
            "Illegal 'weight' option with the 'list' command\n"
        );
        assert_eq!(failure("-L x").0, "unexpected argument x\n");
        assert_eq!(
            failure("--set 1 2").0,
            "--set option requires 3 timeout values\n"
        );
        let e = p("--set 900 120 300").unwrap();
        assert_eq!(e.timeouts, [900, 120, 300]);
    }

    #[test]
    fn help_and_version_exit_zero_on_stdout() {
        match p("-h") {
            Err(Stop::Exit {
                stdout, code: 0, ..
            }) => {
                assert!(stdout.starts_with(VERSION_LINE));
                assert!(stdout.contains("  ipvsadm -A|E virtual-service"));
                assert!(stdout.ends_with(
                    "  --mcast-ttl ttl                     Multicast TTL (default=1)\n"
                ));
            }
            other => panic!("{other:?}"),
        }
        match p("-v") {
            Err(Stop::Exit {
                stdout, code: 0, ..
            }) => assert_eq!(stdout, VERSION_LINE),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn list_takes_one_real_server_under_our_own_name_only() {
        let words: Vec<String> = "-Ln -t 10.0.0.1:80 -r 10.0.0.2:8080"
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert_eq!(
            failure("-Ln -t 10.0.0.1:80 -r 10.0.0.2:8080"),
            (
                "Illegal 'real-server' option with the 'list' command\n".into(),
                2
            )
        );
        let e = parse("ipvsadm-rs", &words).unwrap();
        assert_eq!(e.cmd, Cmd::List);
        assert!(e.has(optc::SERVER));
        assert_eq!(
            (e.dest.addr.to_string(), e.dest.port),
            ("10.0.0.2".into(), 8080)
        );
        // Without a service, still refused.
        assert!(parse(
            "ipvsadm-rs",
            &words[..1]
                .iter()
                .chain(&words[3..])
                .cloned()
                .collect::<Vec<_>>()
        )
        .is_err());
    }

    #[test]
    fn daemon_options() {
        let e = p("--start-daemon backup --mcast-group 239.1.1.1 --mcast-port 9000 --syncid 3")
            .unwrap();
        assert_eq!(e.cmd, Cmd::StartDaemon);
        assert_eq!(e.daemon.state, 2);
        assert_eq!(e.daemon.mcast_ifn, "eth0");
        assert_eq!(e.daemon.mcast_group, Some("239.1.1.1".parse().unwrap()));
        assert_eq!((e.daemon.mcast_port, e.daemon.syncid), (9000, 3));
        assert_eq!(
            failure("--start-daemon master --mcast-group 10.0.0.1").0,
            "invalid IPv4 mcast-group `10.0.0.1'\n"
        );
        assert_eq!(
            failure("--stop-daemon x").0,
            "illegal start_daemon specified\n"
        );
    }
}
