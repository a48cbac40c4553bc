//! The table's chains and rules as data: one description, two spellings.
//! [`Chain::text`] spells them as `nft -f` reads them;
//! [`crate::node::nft::skeleton`] spells the same as nf_tables expressions
//! in the nfnetlink batch that writes the table. A host test writes both
//! into two network namespaces and compares what `nft -j list` shows.
//!
//! A new rule is one more [`Rule`] (a list of [`Stmt`]) in a [`Chain`] of
//! [`chains`]; a statement not yet here is one more [`Stmt`] variant with
//! its text in [`Stmt::text`] and its expressions in the node side's
//! `skeleton::Exprs::stmt` (what `nft --debug=netlink` prints for it).
//! Until it has them, [`Stmt::Nft`] carries it as nft's text alone: a
//! table with one is written as before this encoder existed, its skeleton
//! through `nft -f` and its elements in a second transaction (the node
//! side's fallback), correct but slower and not atomic.

use std::net::IpAddr;

use super::{Options, LOCALHOST, LOCALHOST_MAX_ENDPOINTS, MASQ_MARK};

/// The address family a field or a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4 (`ip`).
    V4,
    /// IPv6 (`ip6`).
    V6,
}

/// A field of a packet a rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `ip daddr` / `ip6 daddr`.
    Daddr(Family),
    /// `ip saddr` / `ip6 saddr`.
    Saddr(Family),
    /// `ip protocol` / `ip6 nexthdr` (a concatenated interval set keyed
    /// by `meta l4proto` is refused on 6.12: EOPNOTSUPP).
    Proto(Family),
    /// `meta l4proto`.
    L4proto,
    /// `th dport`: the transport header's destination port, any protocol.
    Dport,
    /// `tcp dport` (implies `meta l4proto tcp`).
    TcpDport,
    /// `numgen random mod N`: a random number below N, 32 bits in host
    /// order.
    Numgen(u32),
}

impl Field {
    /// How nft spells it.
    pub fn text(self) -> String {
        match self {
            Field::Daddr(Family::V4) => "ip daddr".to_owned(),
            Field::Daddr(Family::V6) => "ip6 daddr".to_owned(),
            Field::Saddr(Family::V4) => "ip saddr".to_owned(),
            Field::Saddr(Family::V6) => "ip6 saddr".to_owned(),
            Field::Proto(Family::V4) => "ip protocol".to_owned(),
            Field::Proto(Family::V6) => "ip6 nexthdr".to_owned(),
            Field::L4proto => "meta l4proto".to_owned(),
            Field::Dport => "th dport".to_owned(),
            Field::TcpDport => "tcp dport".to_owned(),
            Field::Numgen(n) => format!("numgen random mod {n}"),
        }
    }
}

/// A verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
    /// `return`.
    Return,
    /// `jump CHAIN`.
    Jump(&'static str),
    /// `goto CHAIN`.
    Goto(&'static str),
}

impl Verdict {
    /// How nft spells it.
    pub fn text(self) -> String {
        match self {
            Verdict::Accept => "accept".to_owned(),
            Verdict::Drop => "drop".to_owned(),
            Verdict::Return => "return".to_owned(),
            Verdict::Jump(c) => format!("jump {c}"),
            Verdict::Goto(c) => format!("goto {c}"),
        }
    }
}

/// A conntrack key whose flags a rule tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtKey {
    /// `ct state`: `invalid`, `established`, `related`, `new`,
    /// `untracked`.
    State,
    /// `ct status`: `expected`, `seen-reply`, `assured`, `confirmed`,
    /// `snat`, `dnat`, `dying`.
    Status,
}

impl CtKey {
    /// How nft spells it.
    pub fn text(self) -> &'static str {
        match self {
            CtKey::State => "ct state",
            CtKey::Status => "ct status",
        }
    }

    /// The bit of flag `name` (the kernel's `NF_CT_STATE_*_BIT` and
    /// `IPS_*`), `None` for a name nft does not know for this key.
    pub fn bit(self, name: &str) -> Option<u32> {
        let bits: &[(&str, u32)] = match self {
            CtKey::State => &[
                ("invalid", 1),
                ("established", 2),
                ("related", 4),
                ("new", 8),
                ("untracked", 64),
            ],
            CtKey::Status => &[
                ("expected", 1),
                ("seen-reply", 2),
                ("assured", 4),
                ("confirmed", 8),
                ("snat", 16),
                ("dnat", 32),
                ("dying", 512),
            ],
        };
        bits.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
    }
}

/// One statement of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stmt {
    /// `meta nfproto ipv4|ipv6`.
    NfProto(Family),
    /// `ct state new`.
    CtStateNew,
    /// `FIELD . FIELD ... @SET`, or `!= @SET` when `negate`.
    Lookup {
        /// The key's fields, concatenated.
        fields: Vec<Field>,
        /// The set.
        set: &'static str,
        /// Matches when the key is not in the set.
        negate: bool,
    },
    /// `FIELD . FIELD ... vmap @MAP`: the verdict the map gives the key.
    Vmap {
        /// The key's fields, concatenated.
        fields: Vec<Field>,
        /// The verdict map.
        map: &'static str,
    },
    /// `meta mark & BITS == BITS`.
    MarkHas(u32),
    /// `meta mark set meta mark | BITS`.
    MarkOr(u32),
    /// `meta mark set meta mark & BITS`.
    MarkAnd(u32),
    /// `meta mark set FIELD . FIELD ... map @MAP`: the mark a mark map
    /// gives the key (no mark set when the key is not in the map).
    MarkSetMap {
        /// The key's fields, concatenated.
        fields: Vec<Field>,
        /// The mark map (`: mark`).
        map: &'static str,
    },
    /// `meta mark FIRST-LAST`: the mark is in the range (inclusive).
    MarkRange(u32, u32),
    /// `FIELD ADDR/LEN` (`FIELD != ADDR/LEN` when `negate`), an address
    /// field against a prefix; a whole address is spelled without
    /// `/LEN`. Whole bytes only (nft then loads just those).
    Prefix {
        /// An address field.
        field: Field,
        /// The network.
        addr: IpAddr,
        /// The prefix length.
        len: u8,
        /// Matches when the address is outside the prefix.
        negate: bool,
    },
    /// `ct state ! a,b` / `ct status ! a`: none of the flags is set.
    CtNone {
        /// The key.
        key: CtKey,
        /// The flags, by nft's names.
        flags: &'static [&'static str],
    },
    /// `dnat ip to FIELD . FIELD ... map @MAP`: destination NAT to the
    /// address and port a value map (`: ip daddr . th dport`) gives the
    /// key.
    DnatMap {
        /// The key's fields, concatenated.
        fields: Vec<Field>,
        /// The value map.
        map: &'static str,
    },
    /// `masquerade fully-random`.
    Masquerade,
    /// `reject` (ICMP port unreachable of the rule's family).
    Reject,
    /// A verdict.
    Verdict(Verdict),
    /// A statement in nft's text only, with no nf_tables spelling here
    /// yet: the table is then written with `nft -f` (see the module
    /// documentation).
    Nft(String),
}

impl Stmt {
    /// How nft spells it.
    pub fn text(&self) -> String {
        let fields = |f: &[Field]| f.iter().map(|f| f.text()).collect::<Vec<_>>().join(" . ");
        match self {
            Stmt::NfProto(Family::V4) => "meta nfproto ipv4".to_owned(),
            Stmt::NfProto(Family::V6) => "meta nfproto ipv6".to_owned(),
            Stmt::CtStateNew => "ct state new".to_owned(),
            Stmt::Lookup {
                fields: f,
                set,
                negate,
            } => format!("{}{} @{set}", fields(f), if *negate { " !=" } else { "" }),
            Stmt::Vmap { fields: f, map } => format!("{} vmap @{map}", fields(f)),
            Stmt::MarkHas(bits) => format!("meta mark & {bits:#010x} == {bits:#010x}"),
            Stmt::MarkOr(bits) => format!("meta mark set meta mark | {bits:#010x}"),
            Stmt::MarkAnd(bits) => format!("meta mark set meta mark & {bits:#010x}"),
            Stmt::MarkSetMap { fields: f, map } => {
                format!("meta mark set {} map @{map}", fields(f))
            }
            Stmt::MarkRange(first, last) => format!("meta mark {first:#010x}-{last:#010x}"),
            Stmt::Prefix {
                field,
                addr,
                len,
                negate,
            } => {
                let full = if addr.is_ipv4() { 32 } else { 128 };
                let net = if *len == full {
                    addr.to_string()
                } else {
                    format!("{addr}/{len}")
                };
                format!("{}{} {net}", field.text(), if *negate { " !=" } else { "" })
            }
            Stmt::CtNone { key, flags } => format!("{} ! {}", key.text(), flags.join(",")),
            Stmt::DnatMap { fields: f, map } => format!("dnat ip to {} map @{map}", fields(f)),
            Stmt::Masquerade => "masquerade fully-random".to_owned(),
            Stmt::Reject => "reject".to_owned(),
            Stmt::Verdict(v) => v.text(),
            Stmt::Nft(text) => text.clone(),
        }
    }
}

/// A rule: its statements, in order.
pub type Rule = Vec<Stmt>;

/// Where a base chain hooks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    /// `prerouting`.
    Prerouting,
    /// `input`.
    Input,
    /// `output`.
    Output,
    /// `postrouting`.
    Postrouting,
}

impl HookPoint {
    /// How nft spells it.
    pub fn text(self) -> &'static str {
        match self {
            HookPoint::Prerouting => "prerouting",
            HookPoint::Input => "input",
            HookPoint::Output => "output",
            HookPoint::Postrouting => "postrouting",
        }
    }
}

/// A base chain's hook: `type KIND hook POINT priority N; policy accept;`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hook {
    /// `filter` or `nat`.
    pub kind: &'static str,
    /// The hook.
    pub point: HookPoint,
    /// The priority.
    pub priority: i32,
}

/// A chain and its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Its name.
    pub name: String,
    /// A base chain's hook (policy accept); `None` for a regular chain.
    pub hook: Option<Hook>,
    /// Its rules, in order.
    pub rules: Vec<Rule>,
}

impl Chain {
    /// How `nft -f` reads it, inside a `table { }` block.
    pub fn text(&self) -> String {
        let mut out = format!("\tchain {} {{\n", self.name);
        if let Some(h) = self.hook {
            out.push_str(&format!(
                "\t\ttype {} hook {} priority {}; policy accept;\n",
                h.kind,
                h.point.text(),
                h.priority
            ));
        }
        for rule in &self.rules {
            let words: Vec<String> = rule.iter().map(Stmt::text).collect();
            out.push_str(&format!("\t\t{}\n", words.join(" ")));
        }
        out.push_str("\t}\n");
        out
    }
}

fn regular(name: &str, rules: Vec<Rule>) -> Chain {
    Chain {
        name: name.to_owned(),
        hook: None,
        rules,
    }
}

fn base(
    name: &str,
    kind: &'static str,
    point: HookPoint,
    priority: i32,
    rules: Vec<Rule>,
) -> Chain {
    Chain {
        name: name.to_owned(),
        hook: Some(Hook {
            kind,
            point,
            priority,
        }),
        rules,
    }
}

/// The set or map `BASE-v4` or `BASE-v6` of the table (empty when there
/// is none: nft and the kernel then refuse the rule).
fn named(base: &str, fam: Family) -> &'static str {
    let suffix = match fam {
        Family::V4 => "-v4",
        Family::V6 => "-v6",
    };
    super::all_declarations()
        .map(|(n, _, _)| n)
        .find(|n| n.strip_suffix(suffix) == Some(base))
        .unwrap_or("")
}

/// `daddr . l4proto . dport` of `fam`, the Services' key.
fn service_key(fam: Family) -> Vec<Field> {
    vec![Field::Daddr(fam), Field::L4proto, Field::Dport]
}

fn lookup(fields: Vec<Field>, set: &'static str) -> Stmt {
    Stmt::Lookup {
        fields,
        set,
        negate: false,
    }
}

fn jump(chain: &'static str) -> Stmt {
    Stmt::Verdict(Verdict::Jump(chain))
}

/// The table's chains and rules: fixed but for the ClusterIP chain,
/// which `options` shapes.
pub fn chains(options: &Options) -> Vec<Chain> {
    use Family::{V4, V6};
    let fams = [V4, V6];
    let by_fam = named;
    let cluster_ip: Vec<Rule> = if options.masquerade_all {
        vec![vec![jump("mark-masq")]]
    } else if options.cluster_cidrs.is_empty() {
        // kube-proxy without a cluster CIDR masquerades no ClusterIP
        // traffic but the node's own (the output chain's rule).
        Vec::new()
    } else {
        fams.iter()
            .map(|f| {
                vec![
                    Stmt::NfProto(*f),
                    Stmt::Lookup {
                        fields: vec![Field::Saddr(*f)],
                        set: by_fam("cluster-cidrs", *f),
                        negate: true,
                    },
                    jump("mark-masq"),
                ]
            })
            .collect()
    };
    let per_fam =
        |f: &dyn Fn(Family) -> Rule| -> Vec<Rule> { fams.iter().map(|fam| f(*fam)).collect() };
    let vmap = |fam: Family| -> Rule {
        vec![Stmt::Vmap {
            fields: service_key(fam),
            map: by_fam("services", fam),
        }]
    };
    // In-cluster traffic to an eTP Local port's LB and external IPs and
    // NodePort: the pods' (only with a cluster CIDR, as kube-proxy's
    // "short-circuit pod traffic") and the node's marked with the port's
    // firewall mark before the verdict maps; the node's masqueraded (its
    // source is the address itself), the pods' as ClusterIP traffic is.
    let mark_from_map = |fam: Family| Stmt::MarkSetMap {
        fields: service_key(fam),
        map: by_fam("fwmarks", fam),
    };
    let mut prerouting: Vec<Rule> = if options.cluster_cidrs.is_empty() {
        Vec::new()
    } else {
        per_fam(&|fam| {
            vec![
                lookup(vec![Field::Saddr(fam)], by_fam("cluster-cidrs", fam)),
                mark_from_map(fam),
            ]
        })
    };
    prerouting.extend(per_fam(&vmap));
    let mut localhost = Vec::new();
    if options.localhost_nodeports {
        // kube-proxy's rule that came with `route_localnet=1`
        // (CVE-2020-8558, kubernetes#90259: `! -s 127.0.0.0/8 -d
        // 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j
        // DROP`), first in prerouting: a packet from elsewhere to
        // 127.0.0.0/8 that is no reply of a connection the node made is
        // dropped, so that no neighbour reaches a daemon bound to the
        // node's 127.0.0.1. (`ct state` holds one state: none of
        // established and related is kube-proxy's "not RELATED,
        // ESTABLISHED".)
        let loopback = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 0));
        prerouting.insert(
            0,
            vec![
                Stmt::Prefix {
                    field: Field::Saddr(V4),
                    addr: loopback,
                    len: 8,
                    negate: true,
                },
                Stmt::Prefix {
                    field: Field::Daddr(V4),
                    addr: loopback,
                    len: 8,
                    negate: false,
                },
                Stmt::CtNone {
                    key: CtKey::State,
                    flags: &["established", "related"],
                },
                Stmt::CtNone {
                    key: CtKey::Status,
                    flags: &["dnat"],
                },
                Stmt::Verdict(Verdict::Drop),
            ],
        );
        localhost = localhost_chains();
    }
    let mut output = per_fam(&|fam| {
        vec![
            lookup(service_key(fam), by_fam("served", fam)),
            jump("mark-masq"),
        ]
    });
    output.extend(per_fam(&|fam| vec![mark_from_map(fam)]));
    output.extend(per_fam(&vmap));
    let mut input = vec![vec![
        lookup(vec![Field::TcpDport], "health-check-ports"),
        Stmt::Verdict(Verdict::Accept),
    ]];
    input.extend(per_fam(&|fam| {
        vec![
            Stmt::CtStateNew,
            lookup(vec![Field::Daddr(fam)], by_fam("vips", fam)),
            Stmt::Lookup {
                fields: service_key(fam),
                set: by_fam("served", fam),
                negate: true,
            },
            Stmt::Reject,
        ]
    }));
    let marks = Stmt::MarkRange(options.fwmarks.first, options.fwmarks.last);
    let mut postrouting: Vec<Rule> = if options.masquerade_all || options.cluster_cidrs.is_empty() {
        vec![vec![marks, Stmt::Masquerade]]
    } else {
        per_fam(&|fam| {
            vec![
                marks.clone(),
                Stmt::Lookup {
                    fields: vec![Field::Saddr(fam)],
                    set: by_fam("cluster-cidrs", fam),
                    negate: true,
                },
                Stmt::Masquerade,
            ]
        })
    };
    postrouting.push(vec![
        Stmt::MarkHas(MASQ_MARK),
        Stmt::MarkAnd(!MASQ_MARK),
        Stmt::Masquerade,
    ]);
    postrouting.extend(per_fam(&|fam| {
        let mut key = service_key(fam);
        key.push(Field::Saddr(fam));
        vec![lookup(key, by_fam("hairpin", fam)), Stmt::Masquerade]
    }));
    let mut chains = localhost;
    chains.extend([
        regular("mark-masq", vec![vec![Stmt::MarkOr(MASQ_MARK)]]),
        regular("cluster-ip", cluster_ip),
        regular("external", vec![vec![jump("mark-masq")]]),
        regular("external-local", Vec::new()),
        regular(
            "firewall",
            vec![
                vec![
                    Stmt::NfProto(V4),
                    lookup(
                        vec![
                            Field::Daddr(V4),
                            Field::Proto(V4),
                            Field::Dport,
                            Field::Saddr(V4),
                        ],
                        "firewall-allow-v4",
                    ),
                    Stmt::Verdict(Verdict::Return),
                ],
                vec![
                    Stmt::NfProto(V6),
                    lookup(
                        vec![
                            Field::Daddr(V6),
                            Field::Proto(V6),
                            Field::Dport,
                            Field::Saddr(V6),
                        ],
                        "firewall-allow-v6",
                    ),
                    Stmt::Verdict(Verdict::Return),
                ],
                vec![Stmt::Verdict(Verdict::Drop)],
            ],
        ),
        regular(
            "firewall-external",
            vec![vec![jump("firewall")], vec![jump("mark-masq")]],
        ),
        regular("firewall-external-local", vec![vec![jump("firewall")]]),
        base(
            "prerouting",
            "filter",
            HookPoint::Prerouting,
            -150,
            prerouting,
        ),
        base("output", "filter", HookPoint::Output, -150, output),
        base("input", "filter", HookPoint::Input, 0, input),
        base(
            "postrouting",
            "nat",
            HookPoint::Postrouting,
            100,
            postrouting,
        ),
    ]);
    chains
}

/// The chains of `--localhost-nodeports`: one per endpoint count
/// (`endpoints-N`: mark for masquerading, DNAT to the endpoint of a
/// random slot below N), and the nat output hook that sends
/// `127.0.0.1:NodePort` there (numeric priority: nft 1.0.6 refuses
/// `dstnat` on the nat output hook).
fn localhost_chains() -> Vec<Chain> {
    let mut out: Vec<Chain> = (1..=LOCALHOST_MAX_ENDPOINTS as u32)
        .map(|n| Chain {
            name: format!("endpoints-{n}"),
            hook: None,
            rules: vec![
                vec![Stmt::MarkOr(MASQ_MARK)],
                vec![Stmt::DnatMap {
                    fields: vec![Field::L4proto, Field::Dport, Field::Numgen(n)],
                    map: named("localhost-endpoints", Family::V4),
                }],
            ],
        })
        .collect();
    out.push(base(
        "nat-output",
        "nat",
        HookPoint::Output,
        -100,
        vec![vec![
            Stmt::Prefix {
                field: Field::Daddr(Family::V4),
                addr: IpAddr::V4(LOCALHOST),
                len: 32,
                negate: false,
            },
            Stmt::Vmap {
                fields: vec![Field::L4proto, Field::Dport],
                map: named("localhost-nodeports", Family::V4),
            },
        ]],
    ));
    out
}
