//! The element changes of the packet path ([`Change`]) as nf_tables
//! messages of our own, sent in one nfnetlink batch over a
//! `NETLINK_NETFILTER` socket and read back by ipvs-netlink's batch
//! machine ([`Batch`]): what `nft -f` would send for the same `add
//! element`/`delete element` lines, without running a process.
//!
//! The batch is `NFNL_MSG_BATCH_BEGIN`, one `NFT_MSG_NEWSETELEM` or
//! `NFT_MSG_DELSETELEM` per set and run of changes (a few hundred
//! elements each), every one with `NLM_F_ACK`, and `NFNL_MSG_BATCH_END`.
//! The kernel applies it whole or not at all (nfnetlink runs a batch as
//! one nf_tables transaction: a refused message aborts all of it, and
//! the kernel still answers every message, so each refusal is known).
//! A refused message of several elements is sent once more, split one
//! element a message and without `NFNL_MSG_BATCH_END` (the kernel then
//! validates and aborts: nothing is applied) to name the element.
//!
//! How each element is spelled, as nft 1.0 sends it (`nft
//! --debug=netlink`) and as the kernel's nf_tables_api.c reads it:
//! - a key of one field is its value (4 bytes for `ipv4_addr`, 16 for
//!   `ipv6_addr`, 2 in network order for `inet_service`); a
//!   concatenation puts each field in 4-byte registers (`inet_proto`'s
//!   byte and `inet_service`'s two bytes padded with zeros after them);
//! - a plain interval set (`flags interval`, one field, the kernel's
//!   rbtree) holds a range as two elements: its first address, and the
//!   address after its last with `NFT_SET_ELEM_INTERVAL_END`; a range
//!   that runs to the last address has no end element and carries
//!   nft's "open interval" element flag in its user data (so that `nft
//!   list` shows the prefix, not an open range);
//! - a concatenated interval set (the kernel's pipapo) holds a range as
//!   one element: `NFTA_SET_ELEM_KEY` the first value of every field,
//!   `NFTA_SET_ELEM_KEY_END` the last (inclusive);
//! - a verdict map's element carries `NFTA_SET_ELEM_DATA`:
//!   `NFTA_DATA_VERDICT` with `NFTA_VERDICT_CODE` and, for `goto` and
//!   `jump`, `NFTA_VERDICT_CHAIN`;
//! - a value map's element (`--localhost-nodeports`' endpoints, `ip
//!   daddr . th dport`; the firewall marks, `mark`) carries
//!   `NFTA_SET_ELEM_DATA`: `NFTA_DATA_VALUE`, its fields spelled as a
//!   key's (a mark's 4 bytes in host order: nft's `mark` type is
//!   host-endian, as `meta mark` loads it);
//! - a `numgen` field (declared with `typeof`) is a 32-bit number in the
//!   host's byte order, as the kernel's numgen writes its register.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use ipvs_netlink::batch::{Batch, Outcome};
use ipvs_netlink::netlink_packet_core::{Emitable, NetlinkHeader, NLM_F_CREATE, NLM_F_EXCL};
use ipvs_netlink::transport::{self, Expect, Transport};
use netlink_sys::protocols::NETLINK_NETFILTER;

use crate::model::Protocol;
use crate::packet::{self, Change, Field, Key, Value};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFPROTO_INET: u8 = 1;
const NLA_F_NESTED: u16 = 0x8000;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;
/// nft's user data of an element: `NFTNL_UDATA_SET_ELEM_FLAGS` (1), four
/// bytes, `NFTNL_SET_ELEM_F_INTERVAL_OPEN` (1), in host order.
const OPEN_INTERVAL_UDATA: [u8; 6] = [1, 4, 1, 0, 0, 0];

/// The kernel's verdict code of `goto` (`NFT_GOTO`), the one verdict
/// the maps hold.
const NFT_GOTO: i32 = -4;

/// The element list of one message stays under this many bytes (its
/// nest's length is 16 bits).
const MESSAGE_ELEMENTS: usize = 32 * 1024;
/// How long the kernel may take to answer a batch.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Each receive offers this much: a refusal echoes its request.
const RECV_LEN: usize = 128 * 1024;

/// Why an element batch failed (nothing of it was applied, unless said).
#[derive(Debug)]
pub enum BatchError {
    /// The kernel refused an element.
    Element {
        /// Added (else deleted).
        add: bool,
        /// The set or map.
        set: String,
        /// The element, as nft spells it.
        element: String,
        /// The errno.
        errno: i32,
    },
    /// The kernel refused a message of the table's skeleton (a bug: the
    /// table, a set, a chain or a rule nft would have taken).
    Skeleton {
        /// The message.
        what: String,
        /// The errno.
        errno: i32,
    },
    /// The kernel refused the transaction as a whole (its commit).
    Transaction {
        /// The errno.
        errno: i32,
    },
    /// An element this side cannot spell (a key that does not fit its
    /// set's type): a bug, nothing was sent.
    Spell {
        /// The set or map.
        set: String,
        /// The element.
        element: String,
        /// What is wrong.
        message: String,
    },
    /// The exchange failed (the socket, no reply, a reply that does not
    /// read): what the kernel applied is unknown.
    Transport(transport::Error),
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchError::Element {
                add,
                set,
                element,
                errno,
            } => write!(
                f,
                "the kernel refused {} element {{ {element} }} {} set {set} of table {} {}: {}; nothing of the transaction was applied",
                if *add { "adding" } else { "deleting" },
                if *add { "to" } else { "from" },
                packet::FAMILY,
                packet::TABLE,
                io::Error::from_raw_os_error(*errno)
            ),
            BatchError::Skeleton { what, errno } => write!(
                f,
                "the kernel refused the {what} of table {} {}: {}; nothing of the transaction was applied",
                packet::FAMILY,
                packet::TABLE,
                io::Error::from_raw_os_error(*errno)
            ),
            BatchError::Transaction { errno } => write!(
                f,
                "the kernel refused the nftables transaction: {}; nothing of it was applied",
                io::Error::from_raw_os_error(*errno)
            ),
            BatchError::Spell {
                set,
                element,
                message,
            } => write!(f, "cannot spell element {{ {element} }} of set {set}: {message}"),
            BatchError::Transport(e) => {
                write!(f, "nfnetlink: {e} (what the kernel applied is unknown)")
            }
        }
    }
}

impl std::error::Error for BatchError {}

/// The type of a field of a set's key or a map's value, as its
/// declaration names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    V4,
    V6,
    Proto,
    Service,
    /// A 32-bit number in host order (`numgen`).
    Number,
    /// A packet mark: 32 bits in host order.
    Mark,
}

impl Type {
    fn len(self) -> usize {
        match self {
            Type::V4 => 4,
            Type::V6 => 16,
            Type::Proto => 1,
            Type::Service => 2,
            Type::Number | Type::Mark => 4,
        }
    }
}

/// What a declaration says of its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kind {
    fields: Vec<Type>,
    interval: bool,
    /// Of a map: its data (`None` a set).
    data: Option<Data>,
}

/// What a map's elements carry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Data {
    Verdict,
    Value(Vec<Type>),
}

/// The type of a type name (`type ...`) or of an expression (`typeof
/// ...`) of a declaration.
fn field(word: &str) -> Result<Type, String> {
    match word.trim() {
        "ipv4_addr" | "ip daddr" | "ip saddr" => Ok(Type::V4),
        "ipv6_addr" | "ip6 daddr" | "ip6 saddr" => Ok(Type::V6),
        "inet_proto" | "meta l4proto" => Ok(Type::Proto),
        "inet_service" | "th dport" => Ok(Type::Service),
        w if w.starts_with("numgen ") => Ok(Type::Number),
        "mark" | "meta mark" => Ok(Type::Mark),
        other => Err(format!("unknown type {other:?}")),
    }
}

fn fields(text: &str) -> Result<Vec<Type>, String> {
    text.split(" . ").map(field).collect()
}

/// A set's declaration (`type K;`, `typeof K : D;`, flags after) read as
/// its key and, of a map, its data, as nft spells them.
pub(super) fn key_and_data(decl: &str) -> Result<(&str, Option<&str>), String> {
    let ty = decl
        .strip_prefix("type ")
        .or_else(|| decl.strip_prefix("typeof "))
        .and_then(|r| r.split(';').next())
        .ok_or_else(|| format!("no type in {decl:?}"))?;
    Ok(match ty.split_once(" : ") {
        Some((k, d)) => (k, Some(d.trim())),
        None => (ty, None),
    })
}

fn kind(decl: &str) -> Result<Kind, String> {
    let (key, data) = key_and_data(decl)?;
    let data = match data {
        None => None,
        Some("verdict") => Some(Data::Verdict),
        Some(d) => Some(Data::Value(fields(d)?)),
    };
    Ok(Kind {
        fields: fields(key)?,
        interval: decl.contains("flags interval"),
        data,
    })
}

/// One element as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Elem {
    key: Vec<u8>,
    key_end: Option<Vec<u8>>,
    flags: u32,
    userdata: Option<[u8; 6]>,
    verdict: Option<(i32, Option<String>)>,
    /// A value map's value.
    value: Option<Vec<u8>>,
}

/// The protocol number of `p` (`inet_proto`).
fn protocol_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

/// A field's first and last value as the kernel compares them (an
/// address and a port in network order, a number and a mark in the
/// host's), checked against the type `ty` its set declares.
fn range(ty: Type, field: &Field, interval: bool) -> Result<(Vec<u8>, Vec<u8>), String> {
    let one = |v: Vec<u8>| Ok((v.clone(), v));
    match (ty, *field) {
        (Type::Proto, Field::Proto(p)) => one(vec![protocol_number(p)]),
        (Type::Service, Field::Port(n)) => one(n.to_be_bytes().to_vec()),
        (Type::Mark, Field::Mark(m)) => one(m.to_ne_bytes().to_vec()),
        (Type::Number, Field::Number(n)) => one(n.to_ne_bytes().to_vec()),
        (Type::V4, Field::Addr(IpAddr::V4(a))) => one(a.octets().to_vec()),
        (Type::V6, Field::Addr(IpAddr::V6(a))) => one(a.octets().to_vec()),
        (Type::V4 | Type::V6, Field::Range(c)) if (ty == Type::V4) == c.addr().is_ipv4() => {
            let bits: u32 = if ty == Type::V4 { 32 } else { 128 };
            let prefix = u32::from(c.prefix());
            if !interval && prefix != bits {
                return Err(format!("a prefix in a set without intervals: {field}"));
            }
            let value = match c.addr() {
                IpAddr::V4(a) => u128::from(u32::from(a)),
                IpAddr::V6(a) => u128::from(a),
            };
            let host = if prefix == 0 {
                if bits == 32 {
                    u128::from(u32::MAX)
                } else {
                    u128::MAX
                }
            } else {
                (1u128 << (bits - prefix)) - 1
            };
            let first = value & !host;
            let last = first | host;
            Ok((to_bytes(first, ty), to_bytes(last, ty)))
        }
        _ => Err(format!("{field} is not of the set's type ({ty:?})")),
    }
}

fn to_bytes(value: u128, ty: Type) -> Vec<u8> {
    if ty == Type::V4 {
        (value as u32).to_be_bytes().to_vec()
    } else {
        value.to_be_bytes().to_vec()
    }
}

/// The value after `bytes` (a big-endian number), `None` past the last.
fn successor(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = bytes.to_vec();
    for b in out.iter_mut().rev() {
        if *b == u8::MAX {
            *b = 0;
        } else {
            *b += 1;
            return Some(out);
        }
    }
    None
}

/// The kernel elements of one change (two for a range of a plain
/// interval set).
#[cfg(test)]
fn spell(change: &Change) -> Result<Vec<Elem>, String> {
    spell_as(&kind_of(change.set)?, change)
}

/// What the declaration of set `set` says of its elements.
fn kind_of(set: &str) -> Result<Kind, String> {
    kind(packet::declaration(set).ok_or("no such set")?)
}

/// [`spell`] for a change of a set of kind `kind`: the typed fields
/// straight to the kernel's bytes.
fn spell_as(kind: &Kind, change: &Change) -> Result<Vec<Elem>, String> {
    let (verdict, value) = match (change.value, change.add, &kind.data) {
        (Some(Value::Goto(chain)), true, Some(Data::Verdict)) => {
            (Some((NFT_GOTO, Some(chain.to_string()))), None)
        }
        (Some(v), true, Some(Data::Value(types))) => match v.fields() {
            Some(f) => (None, Some(concatenation(types, f.as_slice(), false)?.0)),
            None => return Err(format!("a verdict ({v}) for a value map")),
        },
        (None, true, Some(_)) => return Err("no value for a map's element".to_owned()),
        (Some(v), true, _) => return Err(format!("a value ({v}) the set does not hold")),
        _ => (None, None),
    };
    let key = change.key.fields();
    let parts = key.as_slice();
    if parts.len() != kind.fields.len() {
        return Err(format!(
            "{} fields, the set's type has {}",
            parts.len(),
            kind.fields.len()
        ));
    }
    if let [ty] = kind.fields[..] {
        let (first, last) = range(ty, &parts[0], kind.interval)?;
        if !kind.interval {
            return Ok(vec![Elem {
                key: first,
                key_end: None,
                flags: 0,
                userdata: None,
                verdict,
                value,
            }]);
        }
        let end = successor(&last);
        let mut out = vec![Elem {
            key: first,
            key_end: None,
            flags: 0,
            userdata: end.is_none().then_some(OPEN_INTERVAL_UDATA),
            verdict,
            value,
        }];
        if let Some(end) = end {
            out.push(Elem {
                key: end,
                key_end: None,
                flags: NFT_SET_ELEM_INTERVAL_END,
                userdata: None,
                verdict: None,
                value: None,
            });
        }
        return Ok(out);
    }
    let (key, key_end) = concatenation(&kind.fields, parts, kind.interval)?;
    Ok(vec![Elem {
        key,
        key_end: kind.interval.then_some(key_end),
        flags: 0,
        userdata: None,
        verdict,
        value,
    }])
}

/// The first and last value of a concatenation of `types` holding
/// `fields`, each field in 4-byte registers; with `interval` its last
/// field may be a range.
fn concatenation(
    types: &[Type],
    fields: &[Field],
    interval: bool,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    if fields.len() != types.len() {
        return Err(format!(
            "{} fields, the type has {}",
            fields.len(),
            types.len()
        ));
    }
    let mut key = Vec::with_capacity(types.len() * 16);
    let mut key_end = Vec::with_capacity(types.len() * 16);
    for (i, (ty, field)) in types.iter().zip(fields).enumerate() {
        // Only the last field of a range set is a range here.
        let last_field = i + 1 == types.len();
        let (first, last) = range(*ty, field, interval && last_field)?;
        let pad = ty.len().next_multiple_of(4) - ty.len();
        key.extend_from_slice(&first);
        key.extend(std::iter::repeat_n(0, pad));
        key_end.extend_from_slice(&last);
        key_end.extend(std::iter::repeat_n(0, pad));
    }
    Ok((key, key_end))
}

/// Appends attribute `kind` holding `data`, padded to 4 bytes.
pub(super) fn attr(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Opens a nest of attribute `kind`; close it with [`end_nest`].
pub(super) fn nest(out: &mut Vec<u8>, kind: u16) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    at
}

/// Closes the nest opened at `at` by [`nest`].
pub(super) fn end_nest(out: &mut [u8], at: usize) {
    let len = (out.len() - at) as u16;
    out[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

/// A NUL-terminated string attribute's value.
/// A verdict as nf_tables data (`NFTA_DATA_VERDICT`: its code, and the
/// chain of a jump or goto), inside the caller's data attribute.
pub(super) fn verdict_data(out: &mut Vec<u8>, code: i32, chain: Option<&str>) {
    let v = nest(out, NFTA_DATA_VERDICT);
    attr(out, NFTA_VERDICT_CODE, &code.to_be_bytes());
    if let Some(chain) = chain {
        attr(out, NFTA_VERDICT_CHAIN, &string(chain));
    }
    end_nest(out, v);
}

pub(super) fn string(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.push(0);
    v
}

fn encode_elem(out: &mut Vec<u8>, e: &Elem) {
    let list = nest(out, NFTA_LIST_ELEM);
    if e.flags != 0 {
        attr(out, NFTA_SET_ELEM_FLAGS, &e.flags.to_be_bytes());
    }
    let key = nest(out, NFTA_SET_ELEM_KEY);
    attr(out, NFTA_DATA_VALUE, &e.key);
    end_nest(out, key);
    if let Some(end) = &e.key_end {
        let n = nest(out, NFTA_SET_ELEM_KEY_END);
        attr(out, NFTA_DATA_VALUE, end);
        end_nest(out, n);
    }
    if let Some((code, chain)) = &e.verdict {
        let data = nest(out, NFTA_SET_ELEM_DATA);
        verdict_data(out, *code, chain.as_deref());
        end_nest(out, data);
    }
    if let Some(value) = &e.value {
        let data = nest(out, NFTA_SET_ELEM_DATA);
        attr(out, NFTA_DATA_VALUE, value);
        end_nest(out, data);
    }
    if let Some(u) = &e.userdata {
        attr(out, NFTA_SET_ELEM_USERDATA, u);
    }
    end_nest(out, list);
}

/// One message of a batch other than an element message (the table, a
/// set, a chain, a rule: [`super::skeleton`]).
#[derive(Debug, Clone)]
pub struct Request {
    /// Its `NFT_MSG_*` type.
    pub kind: u16,
    /// Its netlink flags beyond `NLM_F_REQUEST | NLM_F_ACK`.
    pub flags: u16,
    /// What it is, for an error.
    pub what: String,
    /// Its attributes.
    pub body: Vec<u8>,
}

/// One element message: which changes it holds and its element list.
#[derive(Debug, Clone)]
struct Message {
    add: bool,
    set: &'static str,
    /// Indexes into the changes.
    changes: Vec<usize>,
    /// The encoded `NFTA_LIST_ELEM`s.
    elements: Vec<u8>,
}

/// Groups `changes` into messages: a run of changes of one verb and one
/// set, cut at [`MESSAGE_ELEMENTS`] bytes, or at every change when
/// `single` says so of its index.
fn messages(
    changes: &[Change],
    single: impl Fn(usize) -> bool,
) -> Result<Vec<Message>, BatchError> {
    let mut out: Vec<Message> = Vec::new();
    // Each set's kind, read from its declaration once.
    let mut kinds: Vec<(&str, Kind)> = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        let known = match kinds.iter().position(|(s, _)| *s == c.set) {
            Some(at) => Ok(at),
            None => kind_of(c.set).map(|k| {
                kinds.push((c.set, k));
                kinds.len() - 1
            }),
        };
        let elems = known
            .and_then(|at| spell_as(&kinds[at].1, c))
            .map_err(|message| BatchError::Spell {
                set: c.set.to_owned(),
                element: element_text(c),
                message,
            })?;
        let mut bytes = Vec::new();
        for e in &elems {
            encode_elem(&mut bytes, e);
        }
        let joins = out.last().is_some_and(|m| {
            m.add == c.add
                && m.set == c.set
                && m.elements.len() + bytes.len() <= MESSAGE_ELEMENTS
                && !single(i)
                && !m.changes.last().is_some_and(|&j| single(j))
        });
        match out.last_mut() {
            Some(m) if joins => {
                m.changes.push(i);
                m.elements.extend_from_slice(&bytes);
            }
            _ => out.push(Message {
                add: c.add,
                set: c.set,
                changes: vec![i],
                elements: bytes,
            }),
        }
    }
    Ok(out)
}

/// How nft spells a change's element.
fn element_text(c: &Change) -> String {
    c.to_string()
}

/// `nlmsghdr` of `header` (its length set) and `nfgenmsg`, then `body`.
fn emit(out: &mut Vec<u8>, header: &mut NetlinkHeader, family: u8, res_id: u16, body: &[u8]) {
    header.length = (16 + 4 + body.len()) as u32;
    let at = out.len();
    out.resize(at + 16, 0);
    header.emit(&mut out[at..]);
    out.push(family);
    out.push(0); // NFNETLINK_V0
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(body);
}

/// The datagram of `messages`: a batch whose first request is
/// `NFNL_MSG_BATCH_BEGIN` (answered only when the kernel refuses the
/// whole), then one acknowledged request per message; closed by
/// `NFNL_MSG_BATCH_END` when `commit`, else left open (the kernel
/// validates it and aborts).
fn batch(port: u32, first: u32, requests: &[Request], messages: &[Message], commit: bool) -> Batch {
    let mut batch = Batch::new(port, first);
    batch.push(Expect::Refusal, |header, out| {
        header.message_type = NFNL_MSG_BATCH_BEGIN;
        emit(out, header, 0, NFNL_SUBSYS_NFTABLES, &[]);
    });
    for r in requests {
        batch.push(Expect::Ack, |header, out| {
            header.message_type = (NFNL_SUBSYS_NFTABLES << 8) | r.kind;
            header.flags |= r.flags;
            emit(out, header, NFPROTO_INET, 0, &r.body);
        });
    }
    for m in messages {
        batch.push(Expect::Ack, |header, out| {
            let (kind, flags) = if m.add {
                (NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL)
            } else {
                (NFT_MSG_DELSETELEM, 0)
            };
            header.message_type = (NFNL_SUBSYS_NFTABLES << 8) | kind;
            header.flags |= flags;
            let mut body = Vec::with_capacity(m.elements.len() + 48);
            attr(&mut body, NFTA_SET_ELEM_LIST_TABLE, &string(packet::TABLE));
            attr(&mut body, NFTA_SET_ELEM_LIST_SET, &string(m.set));
            let list = nest(&mut body, NFTA_SET_ELEM_LIST_ELEMENTS);
            body.extend_from_slice(&m.elements);
            end_nest(&mut body, list);
            emit(out, header, NFPROTO_INET, 0, &body);
        });
    }
    if commit {
        batch.push_silent(|header, out| {
            header.message_type = NFNL_MSG_BATCH_END;
            emit(out, header, 0, NFNL_SUBSYS_NFTABLES, &[]);
        });
    }
    batch
}

/// What one exchange of a batch told.
struct Told {
    outcomes: Vec<Outcome>,
    failure: Option<transport::Error>,
}

fn exchange(requests: &[Request], messages: &[Message], commit: bool) -> Result<Told, BatchError> {
    let (socket, port) = transport::open_socket(NETLINK_NETFILTER)
        .map_err(|e| BatchError::Transport(transport::Error::Io(e)))?;
    let size: usize = messages
        .iter()
        .map(|m| m.elements.len() + 128)
        .chain(requests.iter().map(|r| r.body.len() + 64))
        .sum::<usize>()
        + 64;
    let count = messages.len() + requests.len();
    // Every acknowledgement, or refusal echoing its request, is queued
    // before the first is read.
    transport::raise_buffers(&socket, (count + 1) * 2048 + 2 * size, 2 * size);
    let mut t =
        Transport::from_socket(socket, port, RECV_LEN, TIMEOUT).map_err(BatchError::Transport)?;
    let first = t.next_seqs(count + 1);
    let mut b = batch(t.port(), first, requests, messages, commit);
    let failure = t.exchange_batch(&mut b, |_| Ok(())).err();
    Ok(Told {
        outcomes: b.outcomes(),
        failure,
    })
}

/// Applies `changes` in one nfnetlink batch (see the module
/// documentation): all of them, or none and an error naming the first
/// element the kernel refused.
pub fn apply(changes: &[Change]) -> Result<(), BatchError> {
    apply_with(&[], changes)
}

/// Applies `requests` (the skeleton of a whole write,
/// [`super::skeleton`]) and then `changes` in one nfnetlink batch: all
/// of it, or none and an error naming the first message the kernel
/// refused.
pub fn apply_with(requests: &[Request], changes: &[Change]) -> Result<(), BatchError> {
    if changes.is_empty() && requests.is_empty() {
        return Ok(());
    }
    let msgs = messages(changes, |_| false)?;
    let told = exchange(requests, &msgs, true)?;
    if let Some(Outcome::Refused(errno)) = told.outcomes.first() {
        return Err(BatchError::Transaction { errno: *errno });
    }
    let refused = told
        .outcomes
        .iter()
        .skip(1)
        .zip(requests)
        .find_map(|(o, r)| match o {
            Outcome::Refused(errno) => Some((*errno, r)),
            _ => None,
        });
    if let Some((errno, r)) = refused {
        return Err(BatchError::Skeleton {
            what: r.what.clone(),
            errno,
        });
    }
    let refused = told
        .outcomes
        .iter()
        .skip(1 + requests.len())
        .zip(&msgs)
        .find_map(|(o, m)| match o {
            Outcome::Refused(errno) => Some((*errno, m)),
            _ => None,
        });
    if let Some((errno, m)) = refused {
        return Err(name_refused(requests, changes, &msgs, errno, m));
    }
    if let Some(e) = told.failure {
        return Err(BatchError::Transport(e));
    }
    if told.outcomes.contains(&Outcome::Unknown) {
        return Err(BatchError::Transport(transport::Error::Protocol(
            "the batch ended with requests unanswered".into(),
        )));
    }
    Ok(())
}

/// Sends one nf_tables request of type `msg` (family `inet`) holding
/// `body`, and reads its answer: the reply's message type, or the errno
/// the kernel refused it with. `what` names it in an error.
fn ask(msg: u16, body: &[u8], what: &str) -> Result<Result<u16, i32>, BatchError> {
    use netlink_sys::{Socket, SocketAddr};
    const NLMSG_ERROR: u16 = 2;
    const NLM_F_REQUEST: u16 = 1;
    let io_err = |e: io::Error| BatchError::Transport(transport::Error::Io(e));
    let bad = |why: &str| {
        BatchError::Transport(transport::Error::Protocol(format!(
            "asking for {what} of table {} {}: {why}",
            packet::FAMILY,
            packet::TABLE
        )))
    };
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(io_err)?;
    socket.bind_auto().map_err(io_err)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(io_err)?;
    let len = 20 + body.len();
    let mut request = Vec::with_capacity(len);
    request.extend_from_slice(&(len as u32).to_ne_bytes());
    request.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
    request.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.extend_from_slice(&[NFPROTO_INET, 0, 0, 0]);
    request.extend_from_slice(body);
    socket.send(&request, 0).map_err(io_err)?;
    // The kernel answers within the send: the reply is queued already.
    socket.set_non_blocking(true).map_err(io_err)?;
    let (reply, _) = socket.recv_from_full().map_err(io_err)?;
    let kind = reply
        .get(4..6)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))
        .ok_or_else(|| bad("short reply"))?;
    if kind != NLMSG_ERROR {
        return Ok(Ok(kind));
    }
    let errno = reply
        .get(16..20)
        .map(|b| -i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| bad("short error"))?;
    if errno == 0 {
        return Err(bad("an acknowledgement, not an answer"));
    }
    Ok(Err(errno))
}

/// Whether the table `inet ipvs-rs` exists: one `NFT_MSG_GETTABLE`,
/// answered by the table (`NFT_MSG_NEWTABLE`) or `ENOENT`.
pub fn table_exists() -> Result<bool, BatchError> {
    const NFT_MSG_GETTABLE: u16 = 1;
    const NFT_MSG_NEWTABLE: u16 = 0;
    let mut body = Vec::new();
    attr(&mut body, 1, &string(packet::TABLE)); // NFTA_TABLE_NAME
    answer(ask(NFT_MSG_GETTABLE, &body, "the table")?, NFT_MSG_NEWTABLE)
}

/// Whether set `set` of the table holds the element of `key`: one
/// `NFT_MSG_GETSETELEM` (what `nft get element` sends), answered by the
/// element (`NFT_MSG_NEWSETELEM`) or `ENOENT` (no such element, set or
/// table). A look as cheap as a read of IPVS, for measuring how soon an
/// element is there.
pub fn element_exists(set: &'static str, key: Key) -> Result<bool, BatchError> {
    const NFT_MSG_GETSETELEM: u16 = 13;
    let change = Change {
        add: false,
        set,
        key,
        value: None,
    };
    let spelled = kind_of(set)
        .and_then(|k| spell_as(&k, &change))
        .map_err(|message| BatchError::Spell {
            set: set.to_owned(),
            element: key.to_string(),
            message,
        })?;
    let mut body = Vec::new();
    attr(&mut body, NFTA_SET_ELEM_LIST_TABLE, &string(packet::TABLE));
    attr(&mut body, NFTA_SET_ELEM_LIST_SET, &string(set));
    let list = nest(&mut body, NFTA_SET_ELEM_LIST_ELEMENTS);
    if let Some(first) = spelled.first() {
        encode_elem(&mut body, first);
    }
    end_nest(&mut body, list);
    answer(
        ask(NFT_MSG_GETSETELEM, &body, "an element")?,
        NFT_MSG_NEWSETELEM,
    )
}

/// A yes of reply type `yes`, a no of `ENOENT`, else an error.
fn answer(reply: Result<u16, i32>, yes: u16) -> Result<bool, BatchError> {
    match reply {
        Ok(kind) if kind == (NFNL_SUBSYS_NFTABLES << 8) | yes => Ok(true),
        Ok(_) => Err(BatchError::Transport(transport::Error::Protocol(
            "an unexpected reply".into(),
        ))),
        Err(libc::ENOENT) => Ok(false),
        Err(e) => Err(BatchError::Transport(transport::Error::Io(
            io::Error::from_raw_os_error(e),
        ))),
    }
}

/// The size of the batch [`apply`] would send for `changes`: its
/// element messages and its bytes (the datagram).
pub fn batch_size(requests: &[Request], changes: &[Change]) -> Result<(usize, usize), BatchError> {
    let msgs = messages(changes, |_| false)?;
    Ok((
        requests.len() + msgs.len(),
        batch(0, 1, requests, &msgs, true).datagram().len(),
    ))
}

/// The error naming the element of message `m` the kernel refused with
/// `errno`: the message's one element, or the first its elements sent
/// alone in a batch the kernel only validates name.
fn name_refused(
    requests: &[Request],
    changes: &[Change],
    msgs: &[Message],
    errno: i32,
    m: &Message,
) -> BatchError {
    let blamed = |i: usize, errno: i32| {
        let c = &changes[i];
        BatchError::Element {
            add: c.add,
            set: c.set.to_owned(),
            element: element_text(c),
            errno,
        }
    };
    if let [only] = m.changes[..] {
        return blamed(only, errno);
    }
    let refused: Vec<usize> = msgs
        .iter()
        .filter(|x| std::ptr::eq(*x, m))
        .flat_map(|x| x.changes.iter().copied())
        .collect();
    if let Ok(split) = messages(changes, |i| refused.contains(&i)) {
        if let Ok(told) = exchange(requests, &split, false) {
            for (o, s) in told.outcomes.iter().skip(1 + requests.len()).zip(&split) {
                if let (Outcome::Refused(e), [only]) = (o, &s.changes[..]) {
                    return blamed(*only, *e);
                }
            }
        }
    }
    // Not named again (the second look saw no refusal): the message's
    // first element stands for it.
    let mut e = blamed(m.changes[0], errno);
    if let BatchError::Element { element, .. } = &mut e {
        element.push_str(&format!(
            " (or another of the {} in its message)",
            m.changes.len()
        ));
    }
    e
}

/// The bytes of one change's elements (for tests: what nft sends).
#[cfg(test)]
fn spelled(change: &Change) -> Result<Vec<Vec<u8>>, String> {
    Ok(spell(change)?
        .iter()
        .map(|e| {
            let mut v = Vec::new();
            encode_elem(&mut v, e);
            v
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Cidr;
    use crate::packet::Chain;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn change(set: &'static str, key: Key, value: Option<Value>) -> Change {
        Change {
            add: true,
            set,
            key,
            value,
        }
    }

    #[test]
    fn keys_are_padded_in_concatenations_only() {
        let tcp80 = Key::Service(ip("1.2.3.4"), Protocol::Tcp, 80);
        let e = spell(&change("served-v4", tcp80, None)).unwrap();
        assert_eq!(e[0].key, [1, 2, 3, 4, 6, 0, 0, 0, 0, 80, 0, 0]);
        let e = spell(&change("health-check-ports", Key::Port(31999), None)).unwrap();
        assert_eq!(e[0].key, 31999u16.to_be_bytes());
        let e = spell(&change(
            "cluster-cidrs-v4",
            Key::Range(cidr("10.0.0.0/8")),
            None,
        ))
        .unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].key, [11, 0, 0, 0]);
        assert_eq!(e[1].flags, NFT_SET_ELEM_INTERVAL_END);
        let e = spell(&change(
            "cluster-cidrs-v4",
            Key::Range(cidr("255.0.0.0/8")),
            None,
        ))
        .unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].userdata, Some(OPEN_INTERVAL_UDATA));
        let source = Key::Source(ip("1.2.3.4"), Protocol::Tcp, 80, cidr("10.0.0.0/24"));
        let e = spell(&change("firewall-allow-v4", source, None)).unwrap();
        assert_eq!(
            e[0].key_end.as_deref(),
            Some(&[1, 2, 3, 4, 6, 0, 0, 0, 0, 80, 0, 0, 10, 0, 0, 255][..])
        );
        let goto = Some(Value::Goto(Chain::Named("x")));
        assert!(spelled(&change("services-v4", tcp80, goto)).is_ok());
        // Typed fields that do not fit the set's type are refused.
        let v6 = Key::Service(ip("fd00::1"), Protocol::Tcp, 80);
        assert!(spell(&change("served-v4", v6, None)).is_err());
        assert!(spell(&change("served-v4", Key::Addr(ip("1.2.3.4")), None)).is_err());
        assert!(spell(&change("services-v4", tcp80, None)).is_err());
        assert!(spell(&change("services-v4", tcp80, Some(Value::Mark(1)))).is_err());
        assert!(spell(&change("fwmarks-v4", tcp80, goto)).is_err());
        assert!(spell(&change("served-v4", tcp80, goto)).is_err());
        assert!(spell(&change("vips-v4", Key::Range(cidr("10.0.0.0/8")), None)).is_err());
    }
}
