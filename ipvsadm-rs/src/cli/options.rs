//! The one table of ipvsadm's options: what popt matches, the name each
//! option has in error messages (`optnames`), and its lines in `-h`.

use super::popt::{ArgKind, OptionSpec};

/// Every option and command of ipvsadm 1.31.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opt {
    AddService,
    EditService,
    DeleteService,
    Clear,
    Restore,
    Save,
    AddServer,
    EditServer,
    DeleteServer,
    List,
    Zero,
    Set,
    StartDaemon,
    StopDaemon,
    Help,
    Version,
    TcpService,
    UdpService,
    SctpService,
    FwmarkService,
    Ipv6,
    Scheduler,
    Pe,
    Persistent,
    Netmask,
    RealServer,
    Gatewaying,
    Ipip,
    Masquerading,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
    Weight,
    UThreshold,
    LThreshold,
    Connection,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Exact,
    Thresholds,
    PersistentConn,
    TunInfo,
    NoSort,
    Sort,
    Ops,
    Numeric,
    SchedFlags,
    SyncId,
    SyncMaxlen,
    McastInterface,
    McastGroup,
    McastPort,
    McastTtl,
}

/// The option bits of `commands_v_options`, in ipvsadm's order; the
/// index is the bit, the name is what messages call the option.
pub const OPTNAMES: [&str; 34] = [
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "mcast-interface",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "syncid",
    "exact",
    "ops",
    "pe",
    "sched-flags",
    "mcast-group",
    "mcast-port",
    "mcast-ttl",
    "sync-maxlen",
    "tun-info",
    "tun-type",
    "tun-port",
    "tun-nocsum",
    "tun-csum",
    "tun-remcsum",
];

/// Indices into [`OPTNAMES`].
#[allow(missing_docs)]
pub mod optc {
    pub const NUMERIC: u8 = 0;
    pub const CONNECTION: u8 = 1;
    pub const SERVICE: u8 = 2;
    pub const SCHEDULER: u8 = 3;
    pub const PERSISTENT: u8 = 4;
    pub const NETMASK: u8 = 5;
    pub const SERVER: u8 = 6;
    pub const FORWARD: u8 = 7;
    pub const WEIGHT: u8 = 8;
    pub const UTHRESHOLD: u8 = 9;
    pub const LTHRESHOLD: u8 = 10;
    pub const MCAST: u8 = 11;
    pub const TIMEOUT: u8 = 12;
    pub const DAEMON: u8 = 13;
    pub const STATS: u8 = 14;
    pub const RATE: u8 = 15;
    pub const THRESHOLDS: u8 = 16;
    pub const PERSISTENTCONN: u8 = 17;
    pub const NOSORT: u8 = 18;
    pub const SYNCID: u8 = 19;
    pub const EXACT: u8 = 20;
    pub const ONEPACKET: u8 = 21;
    pub const PE: u8 = 22;
    pub const SCHED_FLAGS: u8 = 23;
    pub const MCAST_GROUP: u8 = 24;
    pub const MCAST_PORT: u8 = 25;
    pub const MCAST_TTL: u8 = 26;
    pub const SYNC_MAXLEN: u8 = 27;
    pub const TUN_INFO: u8 = 28;
    pub const TUN_TYPE: u8 = 29;
    pub const TUN_PORT: u8 = 30;
    pub const TUN_NOCSUM: u8 = 31;
    pub const TUN_CSUM: u8 = 32;
    pub const TUN_REMCSUM: u8 = 33;
}

/// Where an option's help lines go in `-h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// "Commands:".
    Commands,
    /// "virtual-service:".
    VirtualService,
    /// "Options:".
    Options,
    /// "Daemon Options:".
    Daemon,
    /// Not shown (`-v`, the second spelling of `-l`).
    Hidden,
}

/// One option: popt's view of it and its help lines.
#[derive(Debug)]
pub struct Spec {
    /// Which option.
    pub opt: Opt,
    /// Long name.
    pub long: &'static str,
    /// Short letter.
    pub short: Option<char>,
    /// Argument.
    pub arg: ArgKind,
    /// Its section of the help text.
    pub section: Section,
    /// Its lines in the help text.
    pub help: &'static [&'static str],
}

impl OptionSpec for Spec {
    fn long(&self) -> &str {
        self.long
    }
    fn short(&self) -> Option<char> {
        self.short
    }
    fn arg(&self) -> ArgKind {
        self.arg
    }
}

const fn spec(
    opt: Opt,
    long: &'static str,
    short: Option<char>,
    arg: ArgKind,
    section: Section,
    help: &'static [&'static str],
) -> Spec {
    Spec {
        opt,
        long,
        short,
        arg,
        section,
        help,
    }
}

use ArgKind::{None as Flag, Optional, Required};
use Section::{Commands, Daemon as DaemonOpts, Hidden, Options, VirtualService};

/// The table, in the order of the help text.
#[rustfmt::skip]
pub const TABLE: &[Spec] = &[
    spec(Opt::AddService, "add-service", Some('A'), Flag, Commands,
        &["  --add-service     -A        add virtual service with options"]),
    spec(Opt::EditService, "edit-service", Some('E'), Flag, Commands,
        &["  --edit-service    -E        edit virtual service with options"]),
    spec(Opt::DeleteService, "delete-service", Some('D'), Flag, Commands,
        &["  --delete-service  -D        delete virtual service"]),
    spec(Opt::Clear, "clear", Some('C'), Flag, Commands,
        &["  --clear           -C        clear the whole table"]),
    spec(Opt::Restore, "restore", Some('R'), Flag, Commands,
        &["  --restore         -R        restore rules from stdin"]),
    spec(Opt::Save, "save", Some('S'), Flag, Commands,
        &["  --save            -S        save rules to stdout"]),
    spec(Opt::AddServer, "add-server", Some('a'), Flag, Commands,
        &["  --add-server      -a        add real server with options"]),
    spec(Opt::EditServer, "edit-server", Some('e'), Flag, Commands,
        &["  --edit-server     -e        edit real server with options"]),
    spec(Opt::DeleteServer, "delete-server", Some('d'), Flag, Commands,
        &["  --delete-server   -d        delete real server"]),
    spec(Opt::List, "list", Some('L'), Flag, Commands,
        &["  --list            -L|-l     list the table"]),
    spec(Opt::List, "list", Some('l'), Flag, Hidden, &[]),
    spec(Opt::Zero, "zero", Some('Z'), Flag, Commands,
        &["  --zero            -Z        zero counters in a service or all services"]),
    spec(Opt::Set, "set", None, Flag, Commands,
        &["  --set tcp tcpfin udp        set connection timeout values"]),
    spec(Opt::StartDaemon, "start-daemon", None, Required, Commands,
        &["  --start-daemon              start connection sync daemon"]),
    spec(Opt::StopDaemon, "stop-daemon", None, Required, Commands,
        &["  --stop-daemon               stop connection sync daemon"]),
    spec(Opt::Help, "help", Some('h'), Flag, Commands,
        &["  --help            -h        display this help message"]),
    spec(Opt::Version, "version", Some('v'), Flag, Hidden, &[]),
    spec(Opt::TcpService, "tcp-service", Some('t'), Required, VirtualService,
        &["  --tcp-service|-t  service-address   service-address is host[:port]"]),
    spec(Opt::UdpService, "udp-service", Some('u'), Required, VirtualService,
        &["  --udp-service|-u  service-address   service-address is host[:port]"]),
    spec(Opt::SctpService, "sctp-service", None, Required, VirtualService,
        &["  --sctp-service    service-address   service-address is host[:port]"]),
    spec(Opt::FwmarkService, "fwmark-service", Some('f'), Required, VirtualService,
        &["  --fwmark-service|-f fwmark          fwmark is an integer greater than zero"]),
    spec(Opt::Ipv6, "ipv6", Some('6'), Flag, Options,
        &["  --ipv6         -6                   fwmark entry uses IPv6"]),
    spec(Opt::Scheduler, "scheduler", Some('s'), Required, Options, &[
        "  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh,",
        "                                      the default scheduler is wlc.",
    ]),
    spec(Opt::Pe, "pe", None, Required, Options, &[
        "  --pe            engine              alternate persistence engine may be sip,",
        "                                      not set by default.",
    ]),
    spec(Opt::Persistent, "persistent", Some('p'), Optional, Options,
        &["  --persistent   -p [timeout]         persistent service"]),
    spec(Opt::Netmask, "netmask", Some('M'), Required, Options,
        &["  --netmask      -M netmask           persistent granularity mask"]),
    spec(Opt::RealServer, "real-server", Some('r'), Required, Options,
        &["  --real-server  -r server-address    server-address is host (and port)"]),
    spec(Opt::Gatewaying, "gatewaying", Some('g'), Flag, Options,
        &["  --gatewaying   -g                   gatewaying (direct routing) (default)"]),
    spec(Opt::Ipip, "ipip", Some('i'), Flag, Options,
        &["  --ipip         -i                   ipip encapsulation (tunneling)"]),
    spec(Opt::Masquerading, "masquerading", Some('m'), Flag, Options,
        &["  --masquerading -m                   masquerading (NAT)"]),
    spec(Opt::TunType, "tun-type", None, Required, Options, &[
        "  --tun-type      type                one of ipip|gue|gre,",
        "                                      the default tunnel type is ipip.",
    ]),
    spec(Opt::TunPort, "tun-port", None, Required, Options,
        &["  --tun-port      port                tunnel destination port"]),
    spec(Opt::TunNocsum, "tun-nocsum", None, Flag, Options,
        &["  --tun-nocsum                        tunnel encapsulation without checksum"]),
    spec(Opt::TunCsum, "tun-csum", None, Flag, Options,
        &["  --tun-csum                          tunnel encapsulation with checksum"]),
    spec(Opt::TunRemcsum, "tun-remcsum", None, Flag, Options,
        &["  --tun-remcsum                       tunnel encapsulation with remote checksum"]),
    spec(Opt::Weight, "weight", Some('w'), Required, Options,
        &["  --weight       -w weight            capacity of real server"]),
    spec(Opt::UThreshold, "u-threshold", Some('x'), Required, Options,
        &["  --u-threshold  -x uthreshold        upper threshold of connections"]),
    spec(Opt::LThreshold, "l-threshold", Some('y'), Required, Options,
        &["  --l-threshold  -y lthreshold        lower threshold of connections"]),
    spec(Opt::Connection, "connection", Some('c'), Flag, Options,
        &["  --connection   -c                   output of current IPVS connections"]),
    spec(Opt::Timeout, "timeout", None, Flag, Options,
        &["  --timeout                           output of timeout (tcp tcpfin udp)"]),
    spec(Opt::Daemon, "daemon", None, Flag, Options,
        &["  --daemon                            output of daemon information"]),
    spec(Opt::Stats, "stats", None, Flag, Options,
        &["  --stats                             output of statistics information"]),
    spec(Opt::Rate, "rate", None, Flag, Options,
        &["  --rate                              output of rate information"]),
    spec(Opt::Exact, "exact", Some('X'), Flag, Options,
        &["  --exact                             expand numbers (display exact values)"]),
    spec(Opt::Thresholds, "thresholds", None, Flag, Options,
        &["  --thresholds                        output of thresholds information"]),
    spec(Opt::PersistentConn, "persistent-conn", None, Flag, Options,
        &["  --persistent-conn                   output of persistent connection info"]),
    spec(Opt::TunInfo, "tun-info", None, Flag, Options,
        &["  --tun-info                          output of tunnel information"]),
    spec(Opt::NoSort, "nosort", None, Flag, Options,
        &["  --nosort                            disable sorting output of service/server entries"]),
    spec(Opt::Sort, "sort", None, Flag, Options,
        &["  --sort                              does nothing, for backwards compatibility"]),
    spec(Opt::Ops, "ops", Some('o'), Flag, Options,
        &["  --ops          -o                   one-packet scheduling"]),
    spec(Opt::Numeric, "numeric", Some('n'), Flag, Options,
        &["  --numeric      -n                   numeric output of addresses and ports"]),
    spec(Opt::SchedFlags, "sched-flags", Some('b'), Required, Options,
        &["  --sched-flags  -b flags             scheduler flags (comma-separated)"]),
    spec(Opt::SyncId, "syncid", None, Required, DaemonOpts,
        &["  --syncid sid                        syncid for connection sync (default=255)"]),
    spec(Opt::SyncMaxlen, "sync-maxlen", None, Required, DaemonOpts,
        &["  --sync-maxlen length                Max sync message length (default=1472)"]),
    spec(Opt::McastInterface, "mcast-interface", None, Required, DaemonOpts,
        &["  --mcast-interface interface         multicast interface for connection sync"]),
    spec(Opt::McastGroup, "mcast-group", None, Required, DaemonOpts,
        &["  --mcast-group address               IPv4/IPv6 group (default=224.0.0.81)"]),
    spec(Opt::McastPort, "mcast-port", None, Required, DaemonOpts,
        &["  --mcast-port port                   UDP port (default=8848)"]),
    spec(Opt::McastTtl, "mcast-ttl", None, Required, DaemonOpts,
        &["  --mcast-ttl ttl                     Multicast TTL (default=1)"]),
];

/// The version line of `-v` and of the help text.
pub const VERSION_LINE: &str = "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n";

/// The help text of `-h`, built from [`TABLE`]; `prog` is `argv[0]`.
pub fn usage(prog: &str) -> String {
    let mut s = String::from(VERSION_LINE);
    s.push_str("Usage:\n");
    for line in [
        "-A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]",
        "-D virtual-service",
        "-C",
        "-R",
        "-S [-n]",
        "-a|e virtual-service -r server-address [options]",
        "-d virtual-service -r server-address",
        "-L|l [virtual-service] [options]",
        "-Z [virtual-service]",
        "--set tcp tcpfin udp",
        "--start-daemon {master|backup} [daemon-options]",
        "--stop-daemon {master|backup}",
        "-h",
    ] {
        s.push_str(&format!("  {prog} {line}\n"));
    }
    s.push('\n');
    let section = |s: &mut String, which: Section| {
        for spec in TABLE.iter().filter(|o| o.section == which) {
            for line in spec.help {
                s.push_str(line);
                s.push('\n');
            }
        }
    };
    s.push_str("Commands:\nEither long or short options are allowed.\n");
    section(&mut s, Section::Commands);
    s.push_str("\nvirtual-service:\n");
    section(&mut s, Section::VirtualService);
    s.push_str("\nOptions:\n");
    section(&mut s, Section::Options);
    s.push_str("Daemon Options:\n");
    section(&mut s, Section::Daemon);
    s
}
