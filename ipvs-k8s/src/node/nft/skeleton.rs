//! The packet path's skeleton ([`crate::packet::rules`]: the table, its
//! sets and maps empty, its chains and rules) as nf_tables messages, the
//! start of the one nfnetlink batch that writes the table whole
//! ([`super::netlink`]), so that the first write of a run is one
//! transaction, elements included.
//!
//! Each message is what nft 1.0 sends for the same text (`nft
//! --debug=netlink` and `--debug=mnl` of `Transaction::skeleton_text`),
//! as the kernel's nf_tables_api.c and nft_*.c read it:
//! - the table replaced: `NFT_MSG_NEWTABLE` (no `NLM_F_EXCL`: an
//!   existing table is no error), `NFT_MSG_DELTABLE`, `NFT_MSG_NEWTABLE`
//!   again with nft's comment in its user data;
//! - every chain (`NFT_MSG_NEWCHAIN`; a base chain with its type, hook,
//!   priority and policy), then every set (`NFT_MSG_NEWSET`: key type as
//!   nft numbers its datatypes, concatenations as 6 bits a field, key
//!   length in 4-byte registers a field, the field lengths of a
//!   concatenated interval set, nft's user data: the key's byte order
//!   and, for a concatenation, its "typeof" record), then every rule
//!   (`NFT_MSG_NEWRULE`, appended);
//! - a rule's expressions add what nft adds implicitly: `meta nfproto`
//!   before the first IPv4/IPv6 header field of a rule that has not
//!   matched it (the table is `inet`), `meta l4proto tcp` before `tcp
//!   dport`; the fields of a lookup's key are loaded into consecutive
//!   32-bit registers from register 1.

use super::netlink::{attr, end_nest, nest, string, verdict_data, Request};
use crate::packet::rules::{Chain, CtKey, Family, Field, HookPoint, Stmt, Verdict};
use crate::packet::{self, COMMENT};

const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_NEWSET: u16 = 9;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_TABLE_USERDATA: u16 = 6;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DATA_TYPE: u16 = 6;
const NFTA_SET_DATA_LEN: u16 = 7;
const NFTA_SET_DESC: u16 = 9;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_USERDATA: u16 = 13;
const NFTA_SET_DESC_CONCAT: u16 = 2;
const NFTA_SET_FIELD_LEN: u16 = 1;
const NFTA_LIST_ELEM: u16 = 1;
const NFT_SET_INTERVAL: u32 = 0x4;
const NFT_SET_MAP: u32 = 0x8;
const NFT_SET_CONCAT: u32 = 0x80;
/// `NFT_DATA_VERDICT`: a verdict map's data type.
const NFT_DATA_VERDICT: u32 = 0xffff_ff00;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NF_ACCEPT: u32 = 1;

/// nft's numbers of its datatypes (`TYPE_IPADDR` and friends), which
/// nft reads back from `NFTA_SET_KEY_TYPE` to list the set's type.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_INET_PROTOCOL: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_MARK: u32 = 19;
const TYPE_INTEGER: u32 = 4;
/// nft's expression kinds (`EXPR_*`) and the fields of their "typeof"
/// records: payload's protocol description and header field, numgen's
/// type.
const EXPR_PAYLOAD: u32 = 7;
const EXPR_META: u32 = 9;
const EXPR_NUMGEN: u32 = 23;
const PROTO_DESC_TH: u32 = 11;
const PROTO_DESC_IP: u32 = 12;
const THDR_DPORT: u32 = 2;
const IPHDR_DADDR: u32 = 12;
const NFT_NG_RANDOM: u32 = 1;
/// nft's `EXPR_CONCAT`, in a concatenation's "typeof" user data.
const EXPR_CONCAT: u32 = 13;
/// libnftnl's user data types of a set.
const UDATA_SET_KEYBYTEORDER: u8 = 0;
const UDATA_SET_DATABYTEORDER: u8 = 1;
const UDATA_SET_KEY_TYPEOF: u8 = 3;
const UDATA_SET_DATA_TYPEOF: u8 = 4;
const UDATA_SET_DATA_INTERVAL: u8 = 6;
const UDATA_TYPEOF_EXPR: u8 = 0;
const UDATA_TYPEOF_DATA: u8 = 1;
/// nft's byte orders.
const BYTEORDER_INVALID: u32 = 0;
const BYTEORDER_HOST_ENDIAN: u32 = 1;
const BYTEORDER_BIG_ENDIAN: u32 = 2;
/// libnftnl's user data type of a table's comment.
const UDATA_TABLE_COMMENT: u8 = 0;

fn be32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

/// One libnftnl user data record: type, length, value.
fn udata(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    out.push(kind);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
}

fn request(kind: u16, flags: u16, what: String, body: Vec<u8>) -> Request {
    Request {
        kind,
        flags,
        what,
        body,
    }
}

fn table_body(comment: bool) -> Vec<u8> {
    let mut body = Vec::new();
    attr(&mut body, NFTA_TABLE_NAME, &string(packet::TABLE));
    if comment {
        attr(&mut body, NFTA_TABLE_FLAGS, &be32(0));
        let mut u = Vec::new();
        udata(&mut u, UDATA_TABLE_COMMENT, &string(COMMENT));
        attr(&mut body, NFTA_TABLE_USERDATA, &u);
    }
    body
}

/// The table replaced: `add table`, `delete table` (so that a missing
/// table is no error), then the table anew. [`removal`] is the first
/// two.
fn table() -> Vec<Request> {
    let mut out = removal();
    out.push(request(
        NFT_MSG_NEWTABLE,
        NLM_F_CREATE,
        "table".into(),
        table_body(true),
    ));
    out
}

/// The messages that remove the table whether or not it exists: `add
/// table` then `delete table`.
pub fn removal() -> Vec<Request> {
    vec![
        request(
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE,
            "add table".into(),
            table_body(false),
        ),
        request(
            NFT_MSG_DELTABLE,
            0,
            "delete table".into(),
            table_body(false),
        ),
    ]
}

fn chain(c: &Chain) -> Request {
    let mut body = Vec::new();
    attr(&mut body, NFTA_CHAIN_TABLE, &string(packet::TABLE));
    attr(&mut body, NFTA_CHAIN_NAME, &string(&c.name));
    if let Some(h) = c.hook {
        attr(&mut body, NFTA_CHAIN_TYPE, &string(h.kind));
        attr(&mut body, NFTA_CHAIN_POLICY, &be32(NF_ACCEPT));
        let n = nest(&mut body, NFTA_CHAIN_HOOK);
        let hooknum: u32 = match h.point {
            HookPoint::Prerouting => 0,
            HookPoint::Input => 1,
            HookPoint::Output => 3,
            HookPoint::Postrouting => 4,
        };
        attr(&mut body, NFTA_HOOK_HOOKNUM, &be32(hooknum));
        attr(&mut body, NFTA_HOOK_PRIORITY, &h.priority.to_be_bytes());
        end_nest(&mut body, n);
    }
    request(
        NFT_MSG_NEWCHAIN,
        NLM_F_CREATE,
        format!("chain {}", c.name),
        body,
    )
}

/// A field of a declaration: nft's datatype number, its length, and for
/// a `typeof` declaration nft's record of the expression (libnftnl user
/// data: its kind, then its own records), which nft reads back to list
/// the declaration as it was written.
struct DeclField {
    ty: u32,
    len: u32,
    expr: Option<Vec<u8>>,
}

/// One expression's "typeof" record: its kind, and its own records
/// (each a 32-bit number in host order, numbered from 0).
fn typeof_expr(kind: u32, values: &[u32]) -> Vec<u8> {
    let mut data = Vec::new();
    for (n, v) in values.iter().enumerate() {
        udata(&mut data, n as u8, &v.to_ne_bytes());
    }
    let mut out = Vec::new();
    udata(&mut out, UDATA_TYPEOF_EXPR, &kind.to_ne_bytes());
    udata(&mut out, UDATA_TYPEOF_DATA, &data);
    out
}

/// A field of a declaration: a type name (`type ...`) or an expression
/// (`typeof ...`).
fn decl_field(word: &str) -> Result<DeclField, String> {
    let plain = |ty, len| DeclField {
        ty,
        len,
        expr: None,
    };
    let typed = |ty, len, kind, values: &[u32]| DeclField {
        ty,
        len,
        expr: Some(typeof_expr(kind, values)),
    };
    let word = word.trim();
    if let Some(m) = word.strip_prefix("numgen random mod ") {
        let modulus: u32 = m.parse().map_err(|_| format!("not a modulus: {word:?}"))?;
        return Ok(typed(
            TYPE_INTEGER,
            4,
            EXPR_NUMGEN,
            &[NFT_NG_RANDOM, modulus, 0],
        ));
    }
    match word {
        "ipv4_addr" => Ok(plain(TYPE_IPADDR, 4)),
        "ipv6_addr" => Ok(plain(TYPE_IP6ADDR, 16)),
        "inet_proto" => Ok(plain(TYPE_INET_PROTOCOL, 1)),
        "inet_service" => Ok(plain(TYPE_INET_SERVICE, 2)),
        "mark" => Ok(plain(TYPE_MARK, 4)),
        "meta l4proto" => Ok(typed(TYPE_INET_PROTOCOL, 1, EXPR_META, &[NFT_META_L4PROTO])),
        "th dport" => Ok(typed(
            TYPE_INET_SERVICE,
            2,
            EXPR_PAYLOAD,
            &[PROTO_DESC_TH, THDR_DPORT],
        )),
        "ip daddr" => Ok(typed(
            TYPE_IPADDR,
            4,
            EXPR_PAYLOAD,
            &[PROTO_DESC_IP, IPHDR_DADDR],
        )),
        other => Err(format!("unknown type {other:?}")),
    }
}

/// A declaration's key or data: its fields.
fn decl_fields(text: &str) -> Result<Vec<DeclField>, String> {
    text.split(" . ").map(decl_field).collect()
}

/// The type number and length of a key or data of `fields`: a
/// concatenation's type is 6 bits a field, the first field highest,
/// each field in whole 4-byte registers.
fn type_and_len(fields: &[DeclField]) -> (u32, u32) {
    match fields {
        [one] => (one.ty, one.len),
        _ => fields.iter().fold((0u32, 0u32), |(t, l), f| {
            ((t << 6) | f.ty, l + f.len.next_multiple_of(4))
        }),
    }
}

/// nft's "typeof" record of a key or data of `fields`: a concatenation
/// of the fields' expressions (none of a declaration by type); `None`
/// for a single field declared by type.
fn typeof_record(fields: &[DeclField]) -> Option<Vec<u8>> {
    match fields {
        [one] => one.expr.clone(),
        _ => {
            let mut inner = Vec::new();
            for (n, f) in fields.iter().enumerate() {
                if let Some(e) = &f.expr {
                    udata(&mut inner, n as u8, e);
                }
            }
            let mut out = Vec::new();
            udata(&mut out, UDATA_TYPEOF_EXPR, &EXPR_CONCAT.to_ne_bytes());
            udata(&mut out, UDATA_TYPEOF_DATA, &inner);
            Some(out)
        }
    }
}

/// A map's data, from the declaration's `: DATA`.
struct Data {
    /// nft's datatype number, or `NFT_DATA_VERDICT`.
    ty: u32,
    len: u32,
    /// nft's byte order of it.
    order: u32,
    /// Its "typeof" record, of a `typeof` declaration.
    record: Option<Vec<u8>>,
}

fn data_type(data: &str) -> Result<Data, String> {
    match data.trim() {
        "verdict" => Ok(Data {
            ty: NFT_DATA_VERDICT,
            len: 0,
            order: BYTEORDER_INVALID,
            record: None,
        }),
        "mark" => Ok(Data {
            ty: TYPE_MARK,
            len: 4,
            order: BYTEORDER_HOST_ENDIAN,
            record: None,
        }),
        other => {
            let fields = decl_fields(other)?;
            let (ty, len) = type_and_len(&fields);
            let order = if fields.len() > 1 {
                BYTEORDER_INVALID
            } else {
                BYTEORDER_BIG_ENDIAN
            };
            Ok(Data {
                ty,
                len,
                order,
                record: typeof_record(&fields),
            })
        }
    }
}

fn set(name: &str, decl: &str, map: bool, id: u32) -> Result<Request, String> {
    let (key, data) = super::netlink::key_and_data(decl)?;
    let fields = decl_fields(key)?;
    let data = data.map(data_type).transpose()?;
    if map != data.is_some() {
        return Err(format!("{name}: a map needs data, a set has none"));
    }
    let rest = decl.split_once(';').map_or("", |(_, r)| r);
    if !matches!(rest.trim(), "" | "flags interval;") {
        return Err(format!(
            "no nf_tables spelling of the declaration {decl:?} here"
        ));
    }
    let interval = rest.contains("flags interval");
    let concat = fields.len() > 1;
    let mut flags = 0;
    if interval {
        flags |= NFT_SET_INTERVAL;
    }
    if interval && concat {
        flags |= NFT_SET_CONCAT;
    }
    if map {
        flags |= NFT_SET_MAP;
    }
    let (key_type, key_len) = type_and_len(&fields);
    let mut body = Vec::new();
    attr(&mut body, NFTA_SET_TABLE, &string(packet::TABLE));
    attr(&mut body, NFTA_SET_NAME, &string(name));
    attr(&mut body, NFTA_SET_FLAGS, &be32(flags));
    attr(&mut body, NFTA_SET_KEY_TYPE, &be32(key_type));
    attr(&mut body, NFTA_SET_KEY_LEN, &be32(key_len));
    if let Some(d) = &data {
        attr(&mut body, NFTA_SET_DATA_TYPE, &be32(d.ty));
        attr(&mut body, NFTA_SET_DATA_LEN, &be32(d.len));
    }
    if interval && concat {
        let desc = nest(&mut body, NFTA_SET_DESC);
        let list = nest(&mut body, NFTA_SET_DESC_CONCAT);
        for f in &fields {
            let elem = nest(&mut body, NFTA_LIST_ELEM);
            attr(&mut body, NFTA_SET_FIELD_LEN, &be32(f.len));
            end_nest(&mut body, elem);
        }
        end_nest(&mut body, list);
        end_nest(&mut body, desc);
    }
    attr(&mut body, NFTA_SET_ID, &be32(id));
    let mut u = Vec::new();
    let order = if concat {
        BYTEORDER_INVALID
    } else {
        BYTEORDER_BIG_ENDIAN
    };
    udata(&mut u, UDATA_SET_KEYBYTEORDER, &order.to_ne_bytes());
    if let Some(d) = &data {
        udata(&mut u, UDATA_SET_DATABYTEORDER, &d.order.to_ne_bytes());
    }
    if let Some(record) = typeof_record(&fields) {
        udata(&mut u, UDATA_SET_KEY_TYPEOF, &record);
    }
    if let Some(record) = data.as_ref().and_then(|d| d.record.as_ref()) {
        udata(&mut u, UDATA_SET_DATA_TYPEOF, record);
    }
    if map {
        udata(&mut u, UDATA_SET_DATA_INTERVAL, &0u32.to_ne_bytes());
    }
    attr(&mut body, NFTA_SET_USERDATA, &u);
    Ok(request(
        NFT_MSG_NEWSET,
        NLM_F_CREATE,
        format!("set {name}"),
        body,
    ))
}

/// The expressions of one rule, appended to a list.
struct Exprs {
    out: Vec<u8>,
    /// The family the rule has matched (`meta nfproto`) so far.
    family: Option<Family>,
    /// Set ids by name, for lookups of sets declared in the same batch.
    ids: Vec<(&'static str, u32)>,
}

const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_META_MARK: u32 = 3;
const NFT_META_NFPROTO: u32 = 15;
const NFT_META_L4PROTO: u32 = 16;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_CMP_LTE: u32 = 3;
const NFT_CMP_GTE: u32 = 5;
const NFT_BYTEORDER_HTON: u32 = 1;
const NFT_LOOKUP_F_INV: u32 = 1;
const NFT_CT_STATE: u32 = 0;
const NFT_CT_STATUS: u32 = 2;
const NFT_NAT_DNAT: u32 = 1;
const NF_CT_STATE_NEW: u32 = 1 << 3;
const NFT_REJECT_ICMP_UNREACH: u32 = 0;
const ICMP_PORT_UNREACH: u8 = 3;
const ICMPV6_PORT_UNREACH: u8 = 4;
const NF_NAT_RANGE_PROTO_RANDOM_FULLY: u32 = 0x10;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const IPPROTO_TCP: u8 = 6;

/// The register of 32-bit word `word` from register 1, as nft numbers
/// it: a 16-byte register when it starts one, else a 32-bit one.
fn reg(word: u32) -> u32 {
    if word.is_multiple_of(4) {
        NFT_REG_1 + word / 4
    } else {
        8 + word
    }
}

impl Exprs {
    fn expr(&mut self, name: &str, attrs: impl FnOnce(&mut Vec<u8>)) {
        let elem = nest(&mut self.out, NFTA_LIST_ELEM);
        attr(&mut self.out, NFTA_EXPR_NAME, &string(name));
        let data = nest(&mut self.out, NFTA_EXPR_DATA);
        attrs(&mut self.out);
        end_nest(&mut self.out, data);
        end_nest(&mut self.out, elem);
    }

    fn meta_load(&mut self, key: u32, dreg: u32) {
        self.expr("meta", |o| {
            attr(o, 2, &be32(key)); // NFTA_META_KEY
            attr(o, 1, &be32(dreg)); // NFTA_META_DREG
        });
    }

    fn cmp(&mut self, op: u32, value: &[u8]) {
        self.expr("cmp", |o| {
            attr(o, 1, &be32(NFT_REG_1)); // NFTA_CMP_SREG
            attr(o, 2, &be32(op)); // NFTA_CMP_OP
            let n = nest(o, 3); // NFTA_CMP_DATA
            attr(o, NFTA_DATA_VALUE, value);
            end_nest(o, n);
        });
    }

    fn bitwise(&mut self, mask: u32, xor: u32) {
        self.expr("bitwise", |o| {
            attr(o, 1, &be32(NFT_REG_1)); // NFTA_BITWISE_SREG
            attr(o, 2, &be32(NFT_REG_1)); // NFTA_BITWISE_DREG
            attr(o, 3, &be32(4)); // NFTA_BITWISE_LEN
            let n = nest(o, 4); // NFTA_BITWISE_MASK
            attr(o, NFTA_DATA_VALUE, &mask.to_ne_bytes());
            end_nest(o, n);
            let n = nest(o, 5); // NFTA_BITWISE_XOR
            attr(o, NFTA_DATA_VALUE, &xor.to_ne_bytes());
            end_nest(o, n);
        });
    }

    fn payload(&mut self, base: u32, offset: u32, len: u32, dreg: u32) {
        self.expr("payload", |o| {
            attr(o, 1, &be32(dreg)); // NFTA_PAYLOAD_DREG
            attr(o, 2, &be32(base)); // NFTA_PAYLOAD_BASE
            attr(o, 3, &be32(offset)); // NFTA_PAYLOAD_OFFSET
            attr(o, 4, &be32(len)); // NFTA_PAYLOAD_LEN
        });
    }

    /// `meta nfproto FAMILY`, once a rule.
    fn family(&mut self, fam: Family) {
        if self.family == Some(fam) {
            return;
        }
        self.family = Some(fam);
        self.meta_load(NFT_META_NFPROTO, NFT_REG_1);
        let value = match fam {
            Family::V4 => NFPROTO_IPV4,
            Family::V6 => NFPROTO_IPV6,
        };
        self.cmp(NFT_CMP_EQ, &[value]);
    }

    /// What nft matches before it loads `field`.
    fn dependency(&mut self, field: Field) {
        match field {
            Field::Daddr(f) | Field::Saddr(f) | Field::Proto(f) => self.family(f),
            Field::TcpDport => {
                self.meta_load(NFT_META_L4PROTO, NFT_REG_1);
                self.cmp(NFT_CMP_EQ, &[IPPROTO_TCP]);
            }
            Field::L4proto | Field::Dport | Field::Numgen(_) => {}
        }
    }

    /// Loads `field` into the register of word `word`; its length.
    fn load(&mut self, field: Field, word: u32) -> u32 {
        let dreg = reg(word);
        let (base, offset, len) = match field {
            Field::Daddr(Family::V4) => (NFT_PAYLOAD_NETWORK_HEADER, 16, 4),
            Field::Saddr(Family::V4) => (NFT_PAYLOAD_NETWORK_HEADER, 12, 4),
            Field::Proto(Family::V4) => (NFT_PAYLOAD_NETWORK_HEADER, 9, 1),
            Field::Daddr(Family::V6) => (NFT_PAYLOAD_NETWORK_HEADER, 24, 16),
            Field::Saddr(Family::V6) => (NFT_PAYLOAD_NETWORK_HEADER, 8, 16),
            Field::Proto(Family::V6) => (NFT_PAYLOAD_NETWORK_HEADER, 6, 1),
            Field::Dport | Field::TcpDport => (NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2),
            Field::L4proto => {
                self.meta_load(NFT_META_L4PROTO, dreg);
                return 1;
            }
            Field::Numgen(modulus) => {
                self.expr("numgen", |o| {
                    attr(o, 1, &be32(dreg)); // NFTA_NG_DREG
                    attr(o, 2, &be32(modulus)); // NFTA_NG_MODULUS
                    attr(o, 3, &be32(NFT_NG_RANDOM)); // NFTA_NG_TYPE
                    attr(o, 4, &be32(0)); // NFTA_NG_OFFSET
                });
                return 4;
            }
        };
        self.payload(base, offset, len, dreg);
        len
    }

    /// A lookup of `fields` in `set`; a map's data into `dreg`
    /// (`NFT_REG_VERDICT` for a verdict map).
    fn lookup(&mut self, fields: &[Field], set: &'static str, negate: bool, dreg: Option<u32>) {
        for f in fields {
            self.dependency(*f);
        }
        let mut word = 0;
        for f in fields {
            let len = self.load(*f, word);
            word += len.div_ceil(4);
        }
        let id = self.ids.iter().find(|(n, _)| *n == set).map(|(_, id)| *id);
        self.expr("lookup", |o| {
            attr(o, 1, &string(set)); // NFTA_LOOKUP_SET
            attr(o, 2, &be32(NFT_REG_1)); // NFTA_LOOKUP_SREG
            if let Some(dreg) = dreg {
                attr(o, 3, &be32(dreg)); // NFTA_LOOKUP_DREG
            }
            if let Some(id) = id {
                attr(o, 4, &be32(id)); // NFTA_LOOKUP_SET_ID
            }
            if negate {
                attr(o, 5, &be32(NFT_LOOKUP_F_INV)); // NFTA_LOOKUP_FLAGS
            }
        });
    }

    /// `meta KEY set` from register 1.
    fn meta_set(&mut self, key: u32) {
        self.expr("meta", |o| {
            attr(o, 2, &be32(key)); // NFTA_META_KEY
            attr(o, 3, &be32(NFT_REG_1)); // NFTA_META_SREG
        });
    }

    fn mark_set(&mut self, mask: u32, xor: u32) {
        self.meta_load(NFT_META_MARK, NFT_REG_1);
        self.bitwise(mask, xor);
        self.meta_set(NFT_META_MARK);
    }

    fn stmt(&mut self, s: &Stmt) -> Result<(), String> {
        match s {
            Stmt::Prefix {
                field,
                addr,
                len,
                negate,
            } => {
                // nft loads the prefix's whole bytes only.
                let (offset, full) = match (field, addr) {
                    (Field::Saddr(Family::V4), std::net::IpAddr::V4(_)) => (12, 32),
                    (Field::Daddr(Family::V4), std::net::IpAddr::V4(_)) => (16, 32),
                    (Field::Saddr(Family::V6), std::net::IpAddr::V6(_)) => (8, 128),
                    (Field::Daddr(Family::V6), std::net::IpAddr::V6(_)) => (24, 128),
                    _ => return Err(format!("no prefix match of {}", s.text())),
                };
                if *len == 0 || *len > full || len % 8 != 0 {
                    return Err(format!("not a whole-byte prefix: {}", s.text()));
                }
                self.dependency(*field);
                let bytes = u32::from(*len / 8);
                self.payload(NFT_PAYLOAD_NETWORK_HEADER, offset, bytes, NFT_REG_1);
                let octets = match addr {
                    std::net::IpAddr::V4(a) => a.octets().to_vec(),
                    std::net::IpAddr::V6(a) => a.octets().to_vec(),
                };
                let op = if *negate { NFT_CMP_NEQ } else { NFT_CMP_EQ };
                self.cmp(op, &octets[..bytes as usize]);
            }
            Stmt::CtNone { key, flags } => {
                let mut bits = 0;
                for f in *flags {
                    bits |= key
                        .bit(f)
                        .ok_or_else(|| format!("no flag {f:?} of {}", key.text()))?;
                }
                let ct_key = match key {
                    CtKey::State => NFT_CT_STATE,
                    CtKey::Status => NFT_CT_STATUS,
                };
                self.expr("ct", |o| {
                    attr(o, 1, &be32(NFT_REG_1)); // NFTA_CT_DREG
                    attr(o, 2, &be32(ct_key)); // NFTA_CT_KEY
                });
                self.bitwise(bits, 0);
                self.cmp(NFT_CMP_EQ, &0u32.to_ne_bytes());
            }
            Stmt::DnatMap { fields, map } => {
                // The map's data, `ip daddr . th dport`, lands in register
                // 1 (the address) and the 32-bit register after it (the
                // port).
                self.lookup(fields, map, false, Some(NFT_REG_1));
                self.expr("nat", |o| {
                    attr(o, 1, &be32(NFT_NAT_DNAT)); // NFTA_NAT_TYPE
                    attr(o, 2, &be32(u32::from(NFPROTO_IPV4))); // NFTA_NAT_FAMILY
                    attr(o, 3, &be32(NFT_REG_1)); // NFTA_NAT_REG_ADDR_MIN
                    attr(o, 5, &be32(reg(1))); // NFTA_NAT_REG_PROTO_MIN
                });
            }
            Stmt::NfProto(f) => self.family(*f),
            Stmt::CtStateNew => {
                self.expr("ct", |o| {
                    attr(o, 1, &be32(NFT_REG_1)); // NFTA_CT_DREG
                    attr(o, 2, &be32(NFT_CT_STATE)); // NFTA_CT_KEY
                });
                self.bitwise(NF_CT_STATE_NEW, 0);
                self.cmp(NFT_CMP_NEQ, &0u32.to_ne_bytes());
            }
            Stmt::Lookup {
                fields,
                set,
                negate,
            } => self.lookup(fields, set, *negate, None),
            Stmt::Vmap { fields, map } => self.lookup(fields, map, false, Some(NFT_REG_VERDICT)),
            Stmt::MarkSetMap { fields, map } => {
                self.lookup(fields, map, false, Some(NFT_REG_1));
                self.meta_set(NFT_META_MARK);
            }
            Stmt::MarkRange(first, last) => {
                // nft compares a host-order mark range in network order.
                self.meta_load(NFT_META_MARK, NFT_REG_1);
                self.expr("byteorder", |o| {
                    attr(o, 1, &be32(NFT_REG_1)); // NFTA_BYTEORDER_SREG
                    attr(o, 2, &be32(NFT_REG_1)); // NFTA_BYTEORDER_DREG
                    attr(o, 3, &be32(NFT_BYTEORDER_HTON)); // NFTA_BYTEORDER_OP
                    attr(o, 4, &be32(4)); // NFTA_BYTEORDER_LEN
                    attr(o, 5, &be32(4)); // NFTA_BYTEORDER_SIZE
                });
                self.cmp(NFT_CMP_GTE, &first.to_be_bytes());
                self.cmp(NFT_CMP_LTE, &last.to_be_bytes());
            }
            Stmt::MarkHas(bits) => {
                self.meta_load(NFT_META_MARK, NFT_REG_1);
                self.bitwise(*bits, 0);
                self.cmp(NFT_CMP_EQ, &bits.to_ne_bytes());
            }
            Stmt::MarkOr(bits) => self.mark_set(!*bits, *bits),
            Stmt::MarkAnd(bits) => self.mark_set(*bits, 0),
            Stmt::Masquerade => self.expr("masq", |o| {
                attr(o, 1, &be32(NF_NAT_RANGE_PROTO_RANDOM_FULLY)); // NFTA_MASQ_FLAGS
            }),
            Stmt::Reject => {
                let code = match self.family {
                    Some(Family::V4) => ICMP_PORT_UNREACH,
                    Some(Family::V6) => ICMPV6_PORT_UNREACH,
                    None => return Err("a reject in a rule of no family (nft: icmpx)".into()),
                };
                self.expr("reject", |o| {
                    attr(o, 1, &be32(NFT_REJECT_ICMP_UNREACH)); // NFTA_REJECT_TYPE
                    attr(o, 2, &[code]); // NFTA_REJECT_ICMP_CODE
                });
            }
            Stmt::Verdict(v) => {
                let (code, chain): (i32, Option<&str>) = match v {
                    Verdict::Accept => (1, None),
                    Verdict::Drop => (0, None),
                    Verdict::Return => (-5, None),
                    Verdict::Jump(c) => (-3, Some(c)),
                    Verdict::Goto(c) => (-4, Some(c)),
                };
                self.expr("immediate", |o| {
                    attr(o, 1, &be32(NFT_REG_VERDICT)); // NFTA_IMMEDIATE_DREG
                    let data = nest(o, 2); // NFTA_IMMEDIATE_DATA
                    verdict_data(o, code, chain);
                    end_nest(o, data);
                });
            }
            Stmt::Nft(text) => return Err(format!("no nf_tables spelling of {text:?} here")),
        }
        Ok(())
    }
}

fn rule(chain: &Chain, stmts: &[Stmt], ids: &[(&'static str, u32)]) -> Result<Request, String> {
    let mut e = Exprs {
        out: Vec::new(),
        family: None,
        ids: ids.to_vec(),
    };
    for s in stmts {
        e.stmt(s)?;
    }
    let mut body = Vec::new();
    attr(&mut body, NFTA_RULE_TABLE, &string(packet::TABLE));
    attr(&mut body, NFTA_RULE_CHAIN, &string(&chain.name));
    let list = nest(&mut body, NFTA_RULE_EXPRESSIONS);
    body.extend_from_slice(&e.out);
    end_nest(&mut body, list);
    let text: Vec<String> = stmts.iter().map(Stmt::text).collect();
    Ok(request(
        NFT_MSG_NEWRULE,
        NLM_F_CREATE | NLM_F_APPEND,
        format!("rule in chain {}: {}", chain.name, text.join(" ")),
        body,
    ))
}

/// The messages that replace the table by one holding `chains` and
/// the sets and maps `sets` ([`packet::declarations`]), empty; an error
/// when a statement or a declaration has no spelling here (the writer
/// then runs `nft -f`: [`super::Netfilter`]).
pub fn skeleton(
    chains: &[Chain],
    sets: &[(&'static str, &'static str, bool)],
) -> Result<Vec<Request>, String> {
    let mut out = table();
    out.extend(chains.iter().map(chain));
    let mut ids = Vec::new();
    for (n, (name, decl, map)) in sets.iter().copied().enumerate() {
        let id = n as u32 + 1;
        ids.push((name, id));
        out.push(set(name, decl, map, id)?);
    }
    for c in chains {
        for r in &c.rules {
            out.push(rule(c, r, &ids)?);
        }
    }
    Ok(out)
}
