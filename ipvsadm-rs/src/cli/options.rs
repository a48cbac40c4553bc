//! The one table of every option `ipvsadm-rs` accepts: ipvsadm 1.31's
//! (what popt matches, the name each option has in error messages,
//! `optnames`) and our extensions (`--json`, `--netns`, `--apply`,
//! `--diff`, `--dry-run`, `--from-k8s` and its options, `--completions`,
//! `--man`). `-h`, the man page and the shell completions
//! ([`super::generate`]) are made from it, and the parsers look every
//! spelling up in it.
//!
//! ipvsadm 1.31's entries come first ([`IPVSADM`]): they alone are what
//! the popt walker of a 1.31 command line sees, so `--apply` in the middle
//! of `-L ...` stays "unknown option" as in 1.31. The extensions are
//! recognised before it ([`super::args`]).
//!
//! `-h` under the name `ipvsadm` is 1.31's text, byte for byte (the VM
//! differential suite compares it with the real ipvsadm, which it runs
//! as `ipvsadm`). Under any other name (`ipvsadm-rs`) the same text is
//! followed by the extensions' sections, so the 1.31 part is unchanged
//! whatever the name.

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
    // The extensions of ipvsadm-rs.
    Json,
    Netns,
    Apply,
    Diff,
    DryRun,
    KeepGoing,
    FromK8s,
    Completions,
    Man,
    // `--top` and its options.
    Top,
    Interval,
    Count,
    Batch,
    Sysctls,
    Metrics,
    MetricsFamilies,
    // The options of `--from-k8s`.
    NodeIp,
    NodeName,
    NodeZone,
    K8sScheduler,
    State,
    Interface,
    SetSysctls,
    Force,
    Kubeconfig,
    Context,
    Resync,
    Once,
    Verbose,
    Healthz,
    MetricsBindAddress,
    ClusterCidr,
    MasqueradeAll,
    FwmarkRange,
    NodeportAddresses,
    NoNftables,
    Cleanup,
    IpvsStrictArp,
    LocalRoutes,
    Adopt,
    LocalhostNodeports,
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
    /// Our own commands and options (not 1.31's): shown after 1.31's
    /// text under any name but `ipvsadm`.
    Extensions,
    /// The options after `--from-k8s`.
    FromK8s,
}

impl Section {
    /// Whether the options of this section are ipvsadm 1.31's.
    pub const fn is_131(self) -> bool {
        !matches!(self, Section::Extensions | Section::FromK8s)
    }
}

/// What a shell completes as an option's argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// Nothing in particular.
    Any,
    /// One of these words (separated by spaces).
    Words(&'static str),
    /// A file name.
    File,
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
    /// What its argument completes to.
    pub values: Values,
}

impl Spec {
    /// The same option, its argument completed from `words`.
    const fn words(self, words: &'static str) -> Spec {
        Spec {
            values: Values::Words(words),
            ..self
        }
    }

    /// The same option, its argument completed as a file name.
    const fn file(self) -> Spec {
        Spec {
            values: Values::File,
            ..self
        }
    }
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
    fn by_short(table: &[Spec], letter: char) -> Option<&Spec> {
        if !std::ptr::eq(table, IPVSADM) {
            return table.iter().find(|s| s.short == Some(letter));
        }
        let at = *SHORT_131.get(letter as usize)?;
        IPVSADM.get(usize::from(at).checked_sub(1)?)
    }
}

/// [`IPVSADM`]'s entries by short letter (ASCII): one more than the
/// index of the first entry with that letter, 0 for none. A restore
/// parses every line with [`IPVSADM`], so the walker looks each letter
/// up here rather than walking the table.
const SHORT_131: [u8; 128] = {
    let mut index = [0u8; 128];
    let mut i = IPVSADM.len();
    // Backwards, so that the first entry of a letter is the one kept.
    while i > 0 {
        i -= 1;
        if let Some(c) = IPVSADM[i].short {
            assert!((c as u32) < 128 && i < 255, "a short letter beyond ASCII");
            index[c as usize] = (i + 1) as u8;
        }
    }
    index
};

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
        values: Values::Any,
    }
}

use ArgKind::{None as Flag, Optional, Required};
use Section::{
    Commands, Daemon as DaemonOpts, Extensions, FromK8s, Hidden, Options, VirtualService,
};

/// The table, in the order of the help text: ipvsadm 1.31's options,
/// then ours.
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
        &["  --start-daemon              start connection sync daemon"]).words("master backup"),
    spec(Opt::StopDaemon, "stop-daemon", None, Required, Commands,
        &["  --stop-daemon               stop connection sync daemon"]).words("master backup"),
    spec(Opt::Help, "help", Some('h'), Flag, Commands,
        &["  --help            -h        display this help message"]),
    spec(Opt::Version, "version", Some('v'), Flag, Hidden,
        &["  --version      -v                   print the version"]),
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
    ]).words("rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh"),
    spec(Opt::Pe, "pe", None, Required, Options, &[
        "  --pe            engine              alternate persistence engine may be sip,",
        "                                      not set by default.",
    ]).words("sip"),
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
    ]).words("ipip gue gre"),
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
        &["  --sched-flags  -b flags             scheduler flags (comma-separated)"])
        .words("flag-1 flag-2 flag-3 sh-fallback sh-port mh-fallback mh-port"),
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
    spec(Opt::Json, "json", None, Optional, Extensions, &[
        "  --json[=compact]                    with a list command (or alone): print one",
        "                                      JSON document (compact: on one line)",
    ]).words("compact pretty"),
    spec(Opt::Netns, "netns", None, Required, Extensions, &[
        "  --netns name|path                   act in that network namespace: a name of",
        "                                      ip netns or a path such as /proc/PID/ns/net",
    ]),
    spec(Opt::Apply, "apply", None, Required, Extensions, &[
        "  --apply file                        make the table equal to a file of restore",
        "                                      lines or -Ln --json's document (- for stdin)",
        "                                      with the fewest writes; a real server",
        "                                      without -x/-y keeps its own",
    ]).file(),
    spec(Opt::Diff, "diff", None, Required, Extensions, &[
        "  --diff file                         print what --apply would do, each change",
        "                                      after a `# was:` line of the old value;",
        "                                      exit 0 if the table equals the file, 1 if not",
    ]).file(),
    spec(Opt::DryRun, "dry-run", None, Flag, Extensions,
        &["  --dry-run                           with --apply: print the plan, change nothing"]),
    spec(Opt::KeepGoing, "keep-going", None, Flag, Extensions, &[
        "  --keep-going                        with --apply: when a write fails, keep the",
        "                                      others (without it, they are undone)",
    ]),
    spec(Opt::FromK8s, "from-k8s", None, Optional, Extensions, &[
        "  --from-k8s [file]                   sync the table to Kubernetes Services as",
        "                                      kube-proxy's IPVS mode: from a kubectl dump",
        "                                      (- for stdin), or live without a file",
    ]).file(),
    spec(Opt::Completions, "completions", None, Required, Extensions,
        &["  --completions bash|zsh|fish         print a shell completion script"])
        .words("bash zsh fish"),
    spec(Opt::Man, "man", None, Flag, Extensions,
        &["  --man                               print the man page (roff)"]),
    spec(Opt::Top, "top", None, Flag, Extensions, &[
        "  --top                               a live view of every service and real",
        "                                      server with rates (without a terminal,",
        "                                      or with --batch or --json: a frame a line)",
    ]),
    spec(Opt::Interval, "interval", None, Required, Extensions,
        &["  --interval seconds                  with --top: between refreshes (default 1)"]),
    spec(Opt::Count, "count", None, Required, Extensions,
        &["  --count n                           with --top: stop after n frames"]),
    spec(Opt::Batch, "batch", None, Flag, Extensions,
        &["  --batch                             with --top: plain-text frames, no screen"]),
    spec(Opt::Sysctls, "sysctls", None, Flag, Extensions, &[
        "  --sysctls                           list IPVS's sysctls (net.ipv4.vs.*), the",
        "                                      estimator and the connection table size",
    ]),
    spec(Opt::Metrics, "metrics", None, Required, Extensions, &[
        "  --metrics addr:port                 serve the table's counters to Prometheus",
        "                                      at http://addr:port/metrics (with --netns:",
        "                                      that namespace's, the port opened outside;",
        "                                      --state file: the --from-k8s names to label)",
    ]),
    spec(Opt::MetricsFamilies, "metrics-families", None, Required, Extensions, &[
        "  --metrics-families list             with --metrics: the families served, of",
        "                                      node,service,backend,kube-router (all)",
    ]),
    // Under any name but `ipvsadm`: with `-h`, without a kernel.
    spec(Opt::Version, "version", Some('V'), Flag, Extensions, &[
        "  --version      -V|-v                our version, features and the ipvsadm",
        "                                      we match (no kernel needed)",
    ]),
    spec(Opt::DryRun, "dry-run", None, Flag, FromK8s,
        &["  --dry-run                           print the plan, change nothing"]),
    spec(Opt::NodeIp, "node-ip", None, Required, FromK8s, &[
        "  --node-ip address                   a node address for NodePorts (repeatable;",
        "                                      default: the node's own addresses)",
    ]),
    spec(Opt::NodeName, "node-name", None, Required, FromK8s,
        &["  --node-name name                    the node's name (default: the host name)"]),
    spec(Opt::NodeZone, "node-zone", None, Required, FromK8s, &[
        "  --node-zone zone                    the node's zone, for topology hints",
        "                                      (default: none, no zone hint is used)",
    ]),
    spec(Opt::K8sScheduler, "scheduler", Some('s'), Required, FromK8s,
        &["  --scheduler    -s scheduler         of the services it creates (default rr)"])
        .words("rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh"),
    spec(Opt::State, "state", None, Required, FromK8s, &[
        "  --state file                        the record of what it created",
        "                                      (default /var/lib/ipvsadm-rs/k8s-owned)",
    ]).file(),
    spec(Opt::Interface, "interface", None, Required, FromK8s, &[
        "  --interface name                    the dummy interface of the virtual",
        "                                      addresses (default kube-ipvs0)",
    ]),
    spec(Opt::SetSysctls, "set-sysctls", None, Flag, FromK8s,
        &["  --set-sysctls                       set the sysctls IPVS mode needs"]),
    spec(Opt::Force, "force", None, Flag, FromK8s,
        &["  --force                             run even beside kube-proxy in IPVS mode"]),
    spec(Opt::Kubeconfig, "kubeconfig", None, Required, FromK8s,
        &["  --kubeconfig file                   live: the kubeconfig (default: as kubectl)"])
        .file(),
    spec(Opt::Context, "context", None, Required, FromK8s,
        &["  --context name                      live: the kubeconfig's context to use"]),
    spec(Opt::Resync, "resync", None, Required, FromK8s,
        &["  --resync seconds                    live: period of full resyncs (default 30)"]),
    spec(Opt::Once, "once", None, Flag, FromK8s,
        &["  --once                              live: one full sync, then exit"]),
    spec(Opt::Verbose, "verbose", Some('v'), Flag, FromK8s,
        &["  --verbose      -v                   live: debug logging"]),
    spec(Opt::Healthz, "healthz", None, Required, FromK8s,
        &["  --healthz addr:port                 live: where to serve the health endpoint"]),
    spec(Opt::MetricsBindAddress, "metrics-bind-address", None, Required, FromK8s,
        &["  --metrics-bind-address addr:port    live: where to serve its own metrics"]),
    spec(Opt::ClusterCidr, "cluster-cidr", None, Required, FromK8s, &[
        "  --cluster-cidr cidr[,cidr]          the pods' ranges: ClusterIP traffic from",
        "                                      elsewhere is masqueraded",
    ]),
    spec(Opt::MasqueradeAll, "masquerade-all", None, Flag, FromK8s,
        &["  --masquerade-all                    masquerade all Service traffic"]),
    spec(Opt::FwmarkRange, "fwmark-range", None, Required, FromK8s, &[
        "  --fwmark-range first-last           firewall marks of in-cluster traffic to",
        "                                      externalTrafficPolicy: Local LB and",
        "                                      external IPs (default 0x1000-0x3fff)",
    ]),
    spec(Opt::NodeportAddresses, "nodeport-addresses", None, Required, FromK8s, &[
        "  --nodeport-addresses cidrs|primary  the node addresses that serve NodePorts",
        "                                      (comma-separated CIDRs; default: all)",
    ]),
    spec(Opt::NoNftables, "no-nftables", None, Flag, FromK8s, &[
        "  --no-nftables                       write no packet-path rules (IPVS and",
        "                                      the dummy interface only)",
    ]),
    spec(Opt::IpvsStrictArp, "ipvs-strict-arp", None, Flag, FromK8s, &[
        "  --ipvs-strict-arp                   answer ARP only for addresses of the",
        "                                      interface asked (arp_ignore=1, arp_announce=2)",
    ]),
    spec(Opt::LocalhostNodeports, "localhost-nodeports", None, Flag, FromK8s, &[
        "  --localhost-nodeports               serve IPv4 NodePorts on 127.0.0.1 too",
        "                                      (wants route_localnet=1; off by default;",
        "                                      see docs/kubernetes.md for its risk)",
    ]),
    spec(Opt::LocalRoutes, "local-routes", None, Flag, FromK8s, &[
        "  --local-routes                      make the virtual addresses the node's own",
        "                                      by local routes through the interface, not",
        "                                      as its addresses (linear at any size)",
    ]),
    spec(Opt::Adopt, "adopt", None, Flag, FromK8s, &[
        "  --adopt                             take over the virtual services that are",
        "                                      exactly what it would write (a migration",
        "                                      from kube-proxy or kube-router, a lost",
        "                                      state file); report the others",
    ]),
    spec(Opt::Cleanup, "cleanup", None, Flag, FromK8s, &[
        "  --cleanup                           remove all it created (table, addresses,",
        "                                      virtual services), then exit",
    ]),
];

/// How many entries of [`TABLE`] are ipvsadm 1.31's (they come first).
const fn count_131() -> usize {
    let mut n = 0;
    while n < TABLE.len() && TABLE[n].section.is_131() {
        n += 1;
    }
    n
}

/// ipvsadm 1.31's options: the part of [`TABLE`] the popt walker of a
/// 1.31 command line sees.
pub const IPVSADM: &[Spec] = TABLE.split_at(count_131()).0;

/// Whether `word` is the long spelling of `opt` (`--json`), with no value.
pub fn is_long(word: &str, opt: Opt) -> bool {
    word.strip_prefix("--")
        .is_some_and(|name| TABLE.iter().any(|s| s.opt == opt && s.long == name))
}

/// The entry of `section` that `word` spells (`--name` or `-c`).
pub fn find(section: Section, word: &str) -> Option<&'static Spec> {
    let mut of_section = TABLE.iter().filter(|s| s.section == section);
    match word.strip_prefix("--") {
        Some(name) => of_section.find(|s| s.long == name),
        None => {
            let mut chars = word.strip_prefix('-')?.chars();
            let (c, None) = (chars.next()?, chars.next()) else {
                return None;
            };
            of_section.find(|s| s.short == Some(c))
        }
    }
}

/// The usage lines of the extensions, after the program's name.
pub const EXTENSION_USAGE: &[&str] = &[
    "[--netns name|path] [--json] [1.31 command line]",
    "--apply file [--dry-run]",
    "--diff file",
    "[--netns name|path] [--json] --sysctls",
    "[--netns name|path] --metrics addr:port [--state file] [--metrics-families list]",
    "[--netns name|path] [--json] --top [--interval s] [--count n] [--batch] [--state file]",
    "--from-k8s [file] [from-k8s options]",
    "--completions bash|zsh|fish",
    "--man",
    "--version|-V",
];

/// The version line of `-v` and of the help text.
pub const VERSION_LINE: &str = "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n";

/// Whether `prog` (`argv[0]`) is the name `ipvsadm`, under which every
/// behaviour is 1.31's byte for byte; under any other name
/// (`ipvsadm-rs`) our own extensions of behaviour apply.
pub fn is_ipvsadm(prog: &str) -> bool {
    prog.rsplit('/').next() == Some("ipvsadm")
}

/// The text of `-v`/`--version`: 1.31's line under the name `ipvsadm`;
/// under any other, our version, the build's features and the ipvsadm
/// it is compatible with.
pub fn version(prog: &str) -> String {
    if is_ipvsadm(prog) {
        return VERSION_LINE.to_owned();
    }
    let features: Vec<&str> = [
        ("k8s", cfg!(feature = "k8s")),
        ("k8s-file", cfg!(feature = "k8s-file")),
        ("metrics", cfg!(feature = "metrics")),
        ("top", cfg!(feature = "top")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let features = if features.is_empty() {
        "none".to_owned()
    } else {
        features.join(", ")
    };
    format!(
        "ipvsadm-rs {} (features: {features})\ncompatible with {VERSION_LINE}",
        env!("CARGO_PKG_VERSION")
    )
}

/// The help text of `-h`, built from [`TABLE`]; `prog` is `argv[0]`.
/// Under the name `ipvsadm` it is 1.31's; under any other, 1.31's
/// followed by the extensions'.
pub fn usage(prog: &str) -> String {
    let mut s = usage_131(prog);
    if is_ipvsadm(prog) {
        return s;
    }
    let mut unshown: Vec<String> = Vec::new();
    for spec in IPVSADM {
        let short = spec.short.map(|c| format!("-{c}"));
        for word in [Some(format!("--{}", spec.long)), short]
            .into_iter()
            .flatten()
        {
            if !is_word(&s, &word) && !unshown.contains(&word) {
                unshown.push(word);
            }
        }
    }
    if !unshown.is_empty() {
        s.push_str(&format!(
            "\nAlso accepted, as by ipvsadm 1.31: {}\n",
            unshown.join(" ")
        ));
    }
    s.push_str("\nExtensions of ipvsadm-rs (not in ipvsadm 1.31):\n");
    for line in EXTENSION_USAGE {
        s.push_str(&format!("  {prog} {line}\n"));
    }
    s.push('\n');
    help_lines(&mut s, Section::Extensions);
    s.push_str("\nOptions of --from-k8s:\n");
    help_lines(&mut s, Section::FromK8s);
    s
}

/// Whether `word` is one of the words of `text` (`|`, `,` and brackets
/// separate words).
fn is_word(text: &str, word: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .any(|w| w == word)
}

/// The help lines of a section's options.
fn help_lines(s: &mut String, which: Section) {
    for spec in TABLE.iter().filter(|o| o.section == which) {
        for line in spec.help {
            s.push_str(line);
            s.push('\n');
        }
    }
}

/// ipvsadm 1.31's help text.
fn usage_131(prog: &str) -> String {
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
    s.push_str("Commands:\nEither long or short options are allowed.\n");
    help_lines(&mut s, Section::Commands);
    s.push_str("\nvirtual-service:\n");
    help_lines(&mut s, Section::VirtualService);
    s.push_str("\nOptions:\n");
    help_lines(&mut s, Section::Options);
    s.push_str("Daemon Options:\n");
    help_lines(&mut s, Section::Daemon);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_letter_index_finds_what_popt_finds_by_walking_the_table() {
        use super::super::popt::OptionSpec;
        for c in (0u8..=255).map(char::from).chain(['\u{3b1}', '\u{10ffff}']) {
            let walked = IPVSADM.iter().find(|s| s.short == Some(c));
            let indexed = Spec::by_short(IPVSADM, c);
            assert_eq!(walked.map(|s| s.opt), indexed.map(|s| s.opt), "{c:?}");
        }
        assert!(Spec::by_short(IPVSADM, 'L').is_some());
        // Another table is walked.
        assert_eq!(
            Spec::by_short(&TABLE[1..], 'L').map(|s| s.opt),
            TABLE[1..]
                .iter()
                .find(|s| s.short == Some('L'))
                .map(|s| s.opt)
        );
    }

    #[test]
    fn the_popt_walker_sees_1_31s_options_alone() {
        assert!(IPVSADM.iter().all(|s| s.section.is_131()));
        assert!(TABLE[IPVSADM.len()..].iter().all(|s| !s.section.is_131()));
    }

    #[test]
    fn help_under_the_name_ipvsadm_is_1_31s_alone() {
        for prog in ["ipvsadm", "/sbin/ipvsadm"] {
            let text = usage(prog);
            assert_eq!(text, usage_131(prog));
            assert!(text.ends_with("Multicast TTL (default=1)\n"));
            let ours = TABLE.iter().filter(|s| !s.section.is_131());
            for s in ours.filter(|s| IPVSADM.iter().all(|o| o.long != s.long)) {
                assert!(!text.contains(&format!("--{}", s.long)), "{}", s.long);
            }
        }
        let ours = usage("ipvsadm-rs");
        assert!(ours.starts_with(&usage_131("ipvsadm-rs")));
        assert!(ours.contains("\n  ipvsadm-rs --apply file [--dry-run]\n"));
        assert!(ours.contains("\nOptions of --from-k8s:\n  --dry-run "));
    }

    #[test]
    fn extension_help_lines_keep_1_31s_columns() {
        for s in TABLE.iter().filter(|s| !s.section.is_131()) {
            for line in s.help {
                assert!(line.len() <= 90, "{line}");
                assert_eq!(line.get(36..38), Some("  "), "{line}");
                assert_ne!(line.as_bytes()[38], b' ', "{line}");
            }
        }
    }

    #[test]
    fn spellings_are_found_in_their_section() {
        let find_opt = |section, word| find(section, word).map(|s| s.opt);
        assert_eq!(find_opt(Section::FromK8s, "-s"), Some(Opt::K8sScheduler));
        assert_eq!(find_opt(Section::FromK8s, "-v"), Some(Opt::Verbose));
        assert_eq!(find_opt(Section::FromK8s, "-sv"), None);
        assert_eq!(find_opt(Section::Extensions, "--json"), Some(Opt::Json));
        assert_eq!(find_opt(Section::Extensions, "-json"), None);
        assert!(is_long("--netns", Opt::Netns));
        assert!(!is_long("--netns=x", Opt::Netns));
    }
}
