//! Shared helpers of the cross-crate tests.
//!
//! The main piece is a scripted fake kernel: one end of an `AF_UNIX`
//! `SOCK_SEQPACKET` socket pair goes to [`Handle::from_socket`], the other
//! is served by a thread that parses every request datagram with the
//! crate's own packet layer and answers it as a script says. The reply
//! builders below lay out netlink messages the way the kernel does, so a
//! script can also answer with wrong sequence numbers, foreign ports,
//! truncated headers or garbage attributes.

pub mod fuzz;

/// The examples of the library guide (`docs/library.md`: ipvs-netlink and
/// ipvs-plan from Rust), compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/library.md")]
pub struct LibraryGuideDoctests;

use std::fmt::Debug;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use ipvs_netlink::netlink_packet_core::{
    DefaultNla, Emitable, NetlinkBuffer, ParseableParametrized, NLM_F_MULTIPART,
};
use ipvs_netlink::netlink_packet_generic::constants::GENL_ID_CTRL;
use ipvs_netlink::netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use ipvs_netlink::netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use ipvs_netlink::netlink_packet_generic::{GenlHeader, GenlMessage};
use ipvs_netlink::{
    DestAttr, Destination, Handle, IpvsAttr, IpvsCmd, IpvsMessage, Result, Service, ServiceAttr,
    ServiceFlags, Stats, IPVS_GENL_VERSION,
};
use nix::sys::socket::{
    recv, send, setsockopt, socketpair, sockopt, AddressFamily, MsgFlags, SockFlag, SockType,
};
use nix::sys::time::TimeVal;

/// The netlink port the handle believes it has (replies are addressed to it).
pub const PORT_ID: u32 = 0x0042_4242;
/// The generic-netlink family id the fake kernel gives IPVS.
pub const FAMILY_ID: u16 = 0x2a;
/// The receive timeout of handles under test.
pub const TIMEOUT: Duration = Duration::from_millis(200);

pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_HDRLEN: usize = 16;

/// How long a fake kernel waits for a request before giving up (so that a
/// test that forgets to drop its handle cannot hang the run).
const KERNEL_IDLE_LIMIT: Duration = Duration::from_secs(10);

/// One request datagram as the fake kernel received and parsed it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `nlmsg_type`: [`GENL_ID_CTRL`] or [`FAMILY_ID`].
    pub message_type: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// `nlmsg_pid`.
    pub port: u32,
    /// The generic-netlink header.
    pub genl: GenlHeader,
    /// The parsed IPVS payload (requests of type [`FAMILY_ID`]).
    pub ipvs: Option<IpvsMessage>,
    /// The parsed controller payload (requests of type [`GENL_ID_CTRL`]).
    pub ctrl: Option<GenlCtrl>,
    /// The message's bytes.
    pub raw: Vec<u8>,
}

impl Request {
    /// Whether this is the `CTRL_CMD_GETFAMILY` lookup.
    pub fn is_family_lookup(&self) -> bool {
        self.message_type == GENL_ID_CTRL
    }

    /// The IPVS command, for IPVS requests.
    pub fn cmd(&self) -> Option<IpvsCmd> {
        self.ipvs.as_ref().map(|m| m.cmd)
    }

    /// An ACK of this request.
    pub fn ack(&self) -> Vec<u8> {
        ack(self.seq, self.port)
    }

    /// An `NLMSG_ERROR` with `-errno` in reply to this request.
    pub fn error(&self, errno: i32) -> Vec<u8> {
        nl_error(self.seq, self.port, errno)
    }

    /// `NLMSG_DONE` ending a dump of this request.
    pub fn done(&self) -> Vec<u8> {
        done(self.seq, self.port)
    }
}

/// What the fake kernel does in answer to a request, in order.
pub enum Action {
    /// Sends one datagram (one or more netlink messages).
    Send(Vec<u8>),
    /// Waits.
    Sleep(Duration),
    /// Runs a closure (to tell the test where the kernel is).
    Call(Box<dyn FnOnce() + Send>),
    /// Closes the kernel's end of the socket pair and stops.
    Close,
}

impl Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Send(d) => write!(f, "Send({} bytes)", d.len()),
            Action::Sleep(d) => write!(f, "Sleep({d:?})"),
            Action::Call(_) => f.write_str("Call"),
            Action::Close => f.write_str("Close"),
        }
    }
}

/// Sends `datagram`.
pub fn send_one(datagram: Vec<u8>) -> Vec<Action> {
    vec![Action::Send(datagram)]
}

/// A fake kernel's script: the actions answering each request.
pub type Script = Box<dyn FnMut(&Request) -> Vec<Action> + Send>;

/// A fake kernel serving one end of a socket pair on a thread.
pub struct FakeKernel {
    thread: Option<JoinHandle<Vec<Request>>>,
}

impl FakeKernel {
    /// Starts a fake kernel running `script`; returns the other end of the
    /// socket pair, for [`Handle::from_socket`].
    pub fn start(script: impl FnMut(&Request) -> Vec<Action> + Send + 'static) -> (OwnedFd, Self) {
        let (user, kernel) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        let idle = TimeVal::new(KERNEL_IDLE_LIMIT.as_secs() as _, 0);
        setsockopt(&kernel, sockopt::ReceiveTimeout, &idle).expect("SO_RCVTIMEO");
        let mut script: Script = Box::new(script);
        let thread = thread::Builder::new()
            .name("fake-kernel".into())
            .spawn(move || serve(kernel, &mut script))
            .expect("spawn fake kernel");
        (
            user,
            FakeKernel {
                thread: Some(thread),
            },
        )
    }

    /// Waits for the kernel thread to end (the handle must be dropped
    /// first, or the script must close) and returns the requests it saw.
    /// A panic of the kernel thread (an unparsable request) fails the test.
    pub fn join(mut self) -> Vec<Request> {
        let thread = self.thread.take().expect("joined once");
        match thread.join() {
            Ok(requests) => requests,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

fn serve(fd: OwnedFd, script: &mut Script) -> Vec<Request> {
    let mut requests = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(0) | Err(_) => return requests,
            Ok(n) => n,
        };
        // A datagram may carry several requests (a pipelined batch): the
        // kernel handles them one after the other, and so does the script.
        let mut actions = Vec::new();
        for message in split_messages(&buf[..n]) {
            let request = parse_request(message);
            actions.extend(script(&request));
            requests.push(request);
        }
        for action in actions {
            match action {
                Action::Send(datagram) => {
                    // The user end may be gone already (a test that gave
                    // up waiting): nothing to do about it.
                    let _ = send(fd.as_raw_fd(), &datagram, MsgFlags::MSG_NOSIGNAL);
                }
                Action::Sleep(d) => thread::sleep(d),
                Action::Call(f) => f(),
                Action::Close => return requests,
            }
        }
    }
}

/// The netlink messages of a request datagram; panics on a malformed one.
pub fn split_messages(datagram: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < datagram.len() {
        let nl = NetlinkBuffer::new_checked(&datagram[at..]).expect("request: netlink header");
        let len = nl.length() as usize;
        out.push(&datagram[at..at + len]);
        at += (len + 3) & !3;
    }
    out
}

/// Parses one request message with the crate's packet layer; panics (in
/// the kernel thread, failing the test at [`FakeKernel::join`]) if the
/// handle sent anything malformed.
pub fn parse_request(datagram: &[u8]) -> Request {
    let nl = NetlinkBuffer::new_checked(datagram).expect("request: netlink header");
    assert_eq!(
        nl.length() as usize,
        datagram.len(),
        "request: a whole message"
    );
    let (message_type, flags, seq, port) = (
        nl.message_type(),
        nl.flags(),
        nl.sequence_number(),
        nl.port_number(),
    );
    let payload = nl.payload();
    let (genl, ipvs, ctrl) = match message_type {
        GENL_ID_CTRL => {
            let m = GenlMessage::<GenlCtrl>::parse_with_param(payload, message_type)
                .expect("request: CTRL message");
            (m.header, None, Some(m.payload))
        }
        FAMILY_ID => {
            let m = GenlMessage::<IpvsMessage>::parse_with_param(payload, message_type)
                .expect("request: IPVS message");
            (m.header, Some(m.payload), None)
        }
        t => panic!("request of unexpected message type {t}"),
    };
    Request {
        message_type,
        flags,
        seq,
        port,
        genl,
        ipvs,
        ctrl,
        raw: datagram.to_vec(),
    }
}

/// Wraps `script` so that the family lookup is answered with [`FAMILY_ID`].
pub fn with_family(
    mut script: impl FnMut(&Request) -> Vec<Action> + Send + 'static,
) -> impl FnMut(&Request) -> Vec<Action> + Send + 'static {
    move |req: &Request| {
        if req.is_family_lookup() {
            send_one(ctrl_family_reply(req.seq, req.port, FAMILY_ID))
        } else {
            script(req)
        }
    }
}

/// Starts a fake kernel with `script` (family lookup included) and opens a
/// handle on it with [`TIMEOUT`].
pub fn open(script: impl FnMut(&Request) -> Vec<Action> + Send + 'static) -> (Handle, FakeKernel) {
    let (fd, kernel) = FakeKernel::start(with_family(script));
    let handle = Handle::from_socket(fd, PORT_ID, TIMEOUT).expect("open the handle");
    assert_eq!(handle.family_id(), FAMILY_ID);
    (handle, kernel)
}

/// Starts a fake kernel with `script` as is (it must answer the family
/// lookup itself) and opens a handle on it with [`TIMEOUT`].
pub fn open_raw(
    script: impl FnMut(&Request) -> Vec<Action> + Send + 'static,
) -> (Result<Handle>, FakeKernel) {
    let (fd, kernel) = FakeKernel::start(script);
    (Handle::from_socket(fd, PORT_ID, TIMEOUT), kernel)
}

// ---------------------------------------------------------------------------
// Reply builders

/// One netlink message: a 16-byte header whose length field is `16 +
/// payload.len()`, then the payload, padded to 4 bytes.
pub fn raw_message(message_type: u16, flags: u16, seq: u32, port: u32, payload: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + payload.len();
    raw_message_with_length(message_type, flags, seq, port, payload, len as u32)
}

/// Like [`raw_message`] with any length field (to build lying headers).
pub fn raw_message_with_length(
    message_type: u16,
    flags: u16,
    seq: u32,
    port: u32,
    payload: &[u8],
    length: u32,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(NLMSG_HDRLEN + payload.len() + 3);
    out.extend_from_slice(&length.to_ne_bytes());
    out.extend_from_slice(&message_type.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&port.to_ne_bytes());
    out.extend_from_slice(payload);
    pad4(&mut out);
    out
}

/// A generic-netlink message of `message_type` with `cmd`, `version` and
/// raw attribute bytes.
pub fn genl_message(
    message_type: u16,
    flags: u16,
    seq: u32,
    port: u32,
    cmd: u8,
    version: u8,
    attrs: &[u8],
) -> Vec<u8> {
    let mut payload = vec![cmd, version, 0, 0];
    payload.extend_from_slice(attrs);
    raw_message(message_type, flags, seq, port, &payload)
}

/// The attribute bytes of anything emitable.
pub fn emit<E: Emitable + ?Sized>(e: &E) -> Vec<u8> {
    let mut out = vec![0u8; e.buffer_len()];
    e.emit(&mut out);
    out
}

/// An IPVS message from the kernel (type [`FAMILY_ID`], version 1).
pub fn ipvs_message(flags: u16, seq: u32, port: u32, msg: &IpvsMessage) -> Vec<u8> {
    genl_message(
        FAMILY_ID,
        flags,
        seq,
        port,
        msg.cmd.into(),
        IPVS_GENL_VERSION,
        &emit(msg),
    )
}

/// The controller's answer to `CTRL_CMD_GETFAMILY "IPVS"`.
pub fn ctrl_family_reply(seq: u32, port: u32, family_id: u16) -> Vec<u8> {
    ctrl_reply(
        seq,
        port,
        vec![
            GenlCtrlAttrs::FamilyName("IPVS".into()),
            GenlCtrlAttrs::FamilyId(family_id),
            GenlCtrlAttrs::Version(1),
            GenlCtrlAttrs::HdrSize(0),
            GenlCtrlAttrs::MaxAttr(6),
        ],
    )
}

/// A `CTRL_CMD_NEWFAMILY` message with `nlas`.
pub fn ctrl_reply(seq: u32, port: u32, nlas: Vec<GenlCtrlAttrs>) -> Vec<u8> {
    let ctrl = GenlCtrl {
        cmd: GenlCtrlCmd::NewFamily,
        nlas,
    };
    genl_message(GENL_ID_CTRL, 0, seq, port, ctrl.cmd.into(), 2, &emit(&ctrl))
}

/// `NLMSG_ERROR` with `code` (0 for an ACK), echoing a request header as the
/// kernel does (with `NLM_F_CAPPED` semantics: header only).
pub fn nl_error_code(seq: u32, port: u32, code: i32) -> Vec<u8> {
    let mut payload = code.to_ne_bytes().to_vec();
    // The echoed request header: length, type, flags, seq, port.
    payload.extend_from_slice(&raw_message(FAMILY_ID, 0x5, seq, port, &[]));
    raw_message(NLMSG_ERROR, 0, seq, port, &payload)
}

/// An ACK: `NLMSG_ERROR` with code 0.
pub fn ack(seq: u32, port: u32) -> Vec<u8> {
    nl_error_code(seq, port, 0)
}

/// A refusal: `NLMSG_ERROR` with `-errno`.
pub fn nl_error(seq: u32, port: u32, errno: i32) -> Vec<u8> {
    nl_error_code(seq, port, -errno)
}

/// `NLMSG_DONE` with its 0 status, flagged multipart like the kernel's.
pub fn done(seq: u32, port: u32) -> Vec<u8> {
    raw_message(NLMSG_DONE, NLM_F_MULTIPART, seq, port, &0i32.to_ne_bytes())
}

/// Several netlink messages in one datagram, as the kernel packs dumps.
pub fn datagram<I: IntoIterator<Item = Vec<u8>>>(parts: I) -> Vec<u8> {
    parts.into_iter().flatten().collect()
}

/// The service nest the kernel reports for `svc`: its attributes with
/// [`ServiceFlags::HASHED`] added and, when `svc.stats` is set, both
/// stats nests.
pub fn kernel_service_attrs(svc: &Service) -> Vec<ServiceAttr> {
    let mut attrs: Vec<ServiceAttr> = svc
        .to_attrs()
        .into_iter()
        .map(|a| match a {
            ServiceAttr::Flags { flags, .. } => ServiceAttr::Flags {
                flags: flags | ServiceFlags::HASHED.bits(),
                mask: !0,
            },
            other => other,
        })
        .collect();
    if let Some(stats) = &svc.stats {
        attrs.push(ServiceAttr::Stats(stats.to_attrs()));
        attrs.push(ServiceAttr::Stats64(stats.to_attrs()));
    }
    attrs
}

/// What a `services()` call returns for a service the kernel reports with
/// [`kernel_service_attrs`].
pub fn as_listed(svc: &Service) -> Service {
    let mut out = svc.clone();
    out.flags |= ServiceFlags::HASHED;
    out
}

/// A `NEW_SERVICE` message as the kernel sends `svc`, with `flags`.
fn service_message(flags: u16, seq: u32, port: u32, svc: &Service) -> Vec<u8> {
    ipvs_message(
        flags,
        seq,
        port,
        &IpvsMessage::new(
            IpvsCmd::NewService,
            vec![IpvsAttr::Service(kernel_service_attrs(svc))],
        ),
    )
}

/// One part of a service dump (`NEW_SERVICE`, `NLM_F_MULTI`).
pub fn service_part(seq: u32, port: u32, svc: &Service) -> Vec<u8> {
    service_message(NLM_F_MULTIPART, seq, port, svc)
}

/// The single reply of a `GET_SERVICE` doit.
pub fn service_reply(seq: u32, port: u32, svc: &Service) -> Vec<u8> {
    service_message(0, seq, port, svc)
}

/// The destination nest the kernel reports for `dest`: its attributes,
/// the connection counters and, when `dest.stats` is set, both stats nests.
pub fn kernel_dest_attrs(dest: &Destination) -> Vec<DestAttr> {
    let mut attrs = dest.to_attrs();
    attrs.push(DestAttr::ActiveConns(dest.active_conns));
    attrs.push(DestAttr::InactiveConns(dest.inactive_conns));
    attrs.push(DestAttr::PersistentConns(dest.persistent_conns));
    if let Some(stats) = &dest.stats {
        attrs.push(DestAttr::Stats(stats.to_attrs()));
        attrs.push(DestAttr::Stats64(stats.to_attrs()));
    }
    attrs
}

/// One part of a destination dump (`NEW_DEST`, `NLM_F_MULTI`).
pub fn dest_part(seq: u32, port: u32, dest: &Destination) -> Vec<u8> {
    ipvs_message(
        NLM_F_MULTIPART,
        seq,
        port,
        &IpvsMessage::new(
            IpvsCmd::NewDest,
            vec![IpvsAttr::Dest(kernel_dest_attrs(dest))],
        ),
    )
}

/// A service dump part whose service nest holds `nest` verbatim (to send
/// garbage attributes).
pub fn raw_service_part(seq: u32, port: u32, nest: Vec<u8>) -> Vec<u8> {
    ipvs_message(
        NLM_F_MULTIPART,
        seq,
        port,
        &IpvsMessage::new(
            IpvsCmd::NewService,
            vec![IpvsAttr::Other(DefaultNla::new(1, nest))],
        ),
    )
}

/// One raw attribute: header with `length` (normally `4 + value.len()`),
/// `kind`, the value, padding.
pub fn raw_nla(kind: u16, length: u16, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&length.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    pad4(&mut out);
    out
}

/// Pads `out` with zeros to a multiple of 4 bytes, as netlink aligns.
fn pad4(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Counters with every field set from `base` (distinct values).
pub fn sample_stats(base: u64) -> Stats {
    let mut s = Stats::default();
    s.conns = base + 1;
    s.in_pkts = base + 2;
    s.out_pkts = base + 3;
    s.in_bytes = base + 4;
    s.out_bytes = base + 5;
    s.cps = base + 6;
    s.in_pps = base + 7;
    s.out_pps = base + 8;
    s.in_bps = base + 9;
    s.out_bps = base + 10;
    s
}

/// A channel a script can signal on (through [`Action::Call`]).
pub fn signal() -> (mpsc::Sender<()>, mpsc::Receiver<()>) {
    mpsc::channel()
}
