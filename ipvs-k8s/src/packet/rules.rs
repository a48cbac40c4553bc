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

use super::{Options, MASQ_MARK};

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
}

impl Field {
    /// How nft spells it.
    pub fn text(self) -> &'static str {
        match self {
            Field::Daddr(Family::V4) => "ip daddr",
            Field::Daddr(Family::V6) => "ip6 daddr",
            Field::Saddr(Family::V4) => "ip saddr",
            Field::Saddr(Family::V6) => "ip6 saddr",
            Field::Proto(Family::V4) => "ip protocol",
            Field::Proto(Family::V6) => "ip6 nexthdr",
            Field::L4proto => "meta l4proto",
            Field::Dport => "th dport",
            Field::TcpDport => "tcp dport",
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
    pub name: &'static str,
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

fn regular(name: &'static str, rules: Vec<Rule>) -> Chain {
    Chain {
        name,
        hook: None,
        rules,
    }
}

fn base(
    name: &'static str,
    kind: &'static str,
    point: HookPoint,
    priority: i32,
    rules: Vec<Rule>,
) -> Chain {
    Chain {
        name,
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
    super::declarations()
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
    let mut output = per_fam(&|fam| {
        vec![
            lookup(service_key(fam), by_fam("served", fam)),
            jump("mark-masq"),
        ]
    });
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
    let mut postrouting = vec![vec![
        Stmt::MarkHas(MASQ_MARK),
        Stmt::MarkAnd(!MASQ_MARK),
        Stmt::Masquerade,
    ]];
    postrouting.extend(per_fam(&|fam| {
        let mut key = service_key(fam);
        key.push(Field::Saddr(fam));
        vec![lookup(key, by_fam("hairpin", fam)), Stmt::Masquerade]
    }));
    vec![
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
            per_fam(&vmap),
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
    ]
}
