//! A raw generic-netlink client of IPVS for the floors `nlfloor` has no
//! mode for: a dump of the services alone (what a scrape of the
//! per-service families reads) and a flush (`-C`). Its requests are bytes
//! laid out here by hand from `<linux/netlink.h>`, `<linux/genetlink.h>`
//! and `<linux/ip_vs.h>` over rust-netlink's bare socket (`netlink-sys`):
//! none of the project's encoders or decoders, nothing decoded beyond
//! each message's header, as `nlfloor.c` does.
//!
//! It runs in the calling process (no process start, unlike the tools it
//! is set beside: their rows say so).

use std::io;
use std::time::{Duration, Instant};

use netlink_sys::{protocols::NETLINK_GENERIC, Socket};

/// `NLMSG_ERROR`, `NLMSG_DONE` (`<linux/netlink.h>`).
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `NLM_F_REQUEST`, `NLM_F_ACK`, `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
/// `GENL_ID_CTRL`, `CTRL_CMD_GETFAMILY`, `CTRL_ATTR_FAMILY_ID`,
/// `CTRL_ATTR_FAMILY_NAME` (`<linux/genetlink.h>`).
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
/// `IPVS_CMD_GET_SERVICE`, `IPVS_CMD_FLUSH`, `IPVS_GENL_VERSION`
/// (`<linux/ip_vs.h>`).
const IPVS_CMD_GET_SERVICE: u8 = 4;
const IPVS_CMD_FLUSH: u8 = 17;
const IPVS_GENL_VERSION: u8 = 1;

/// A netlink socket bound to the IPVS family of the calling thread's
/// network namespace.
pub struct RawIpvs {
    socket: Socket,
    family: u16,
    seq: u32,
    buf: Vec<u8>,
}

/// What one floor request cost and what it read.
#[derive(Clone, Copy, Debug)]
pub struct Timed {
    /// From the first byte sent to the last message read.
    pub elapsed: Duration,
    /// The messages of the family read (a dump's services; 0 for a flush).
    pub messages: usize,
}

impl RawIpvs {
    /// Opens the socket and asks the controller for IPVS's family id.
    pub fn open() -> io::Result<RawIpvs> {
        let mut socket = Socket::new(NETLINK_GENERIC)?;
        socket.bind_auto()?;
        socket.set_rx_buf_sz(1 << 20)?;
        let mut this = RawIpvs {
            socket,
            family: 0,
            seq: 0,
            buf: Vec::with_capacity(1 << 20),
        };
        let mut name = b"IPVS\0".to_vec();
        name.resize(8, 0);
        let mut attr = Vec::with_capacity(12);
        attr.extend_from_slice(&9u16.to_ne_bytes()); // 4 + "IPVS\0"
        attr.extend_from_slice(&CTRL_ATTR_FAMILY_NAME.to_ne_bytes());
        attr.extend_from_slice(&name);
        this.send(GENL_ID_CTRL, NLM_F_REQUEST, CTRL_CMD_GETFAMILY, 1, &attr)?;
        this.recv_one()?;
        error(&this.buf)?;
        this.family = family_id(&this.buf)
            .ok_or_else(|| io::Error::other("the controller's answer has no IPVS family id"))?;
        Ok(this)
    }

    /// One dump of the services (`IPVS_CMD_GET_SERVICE`, `NLM_F_DUMP`),
    /// read to `NLMSG_DONE`, each message counted, none decoded.
    pub fn dump_services(&mut self) -> io::Result<Timed> {
        let start = Instant::now();
        self.send(
            self.family,
            NLM_F_REQUEST | NLM_F_DUMP,
            IPVS_CMD_GET_SERVICE,
            IPVS_GENL_VERSION,
            &[],
        )?;
        let mut messages = 0;
        loop {
            self.buf.clear();
            let n = self.socket.recv(&mut self.buf, 0)?;
            let mut at = 0;
            while at + 16 <= n {
                let (len, kind) = header(&self.buf[at..]);
                match kind {
                    NLMSG_DONE => {
                        return Ok(Timed {
                            elapsed: start.elapsed(),
                            messages,
                        })
                    }
                    NLMSG_ERROR => error(&self.buf[at..])?,
                    _ => messages += 1,
                }
                at += align(len.max(16));
            }
        }
    }

    /// `IPVS_CMD_FLUSH`, acknowledged.
    pub fn flush(&mut self) -> io::Result<Timed> {
        let start = Instant::now();
        self.send(
            self.family,
            NLM_F_REQUEST | NLM_F_ACK,
            IPVS_CMD_FLUSH,
            IPVS_GENL_VERSION,
            &[],
        )?;
        self.recv_one()?;
        error(&self.buf)?;
        Ok(Timed {
            elapsed: start.elapsed(),
            messages: 0,
        })
    }

    fn send(
        &mut self,
        kind: u16,
        flags: u16,
        cmd: u8,
        version: u8,
        attrs: &[u8],
    ) -> io::Result<()> {
        self.seq += 1;
        let len = 16 + 4 + attrs.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&[cmd, version, 0, 0]);
        msg.extend_from_slice(attrs);
        self.socket.send(&msg, 0)?;
        Ok(())
    }

    /// Reads one datagram into `buf`; an error message becomes an error.
    fn recv_one(&mut self) -> io::Result<()> {
        self.buf.clear();
        let n = self.socket.recv(&mut self.buf, 0)?;
        if n < 16 {
            return Err(io::Error::other(format!("a netlink answer of {n} bytes")));
        }
        Ok(())
    }
}

/// A message's length and type.
fn header(msg: &[u8]) -> (usize, u16) {
    let len = u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]) as usize;
    (len, u16::from_ne_bytes([msg[4], msg[5]]))
}

/// `NLMSG_ALIGN`.
fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// An `NLMSG_ERROR` message's error as a result (0: an ack); any other
/// message is no error.
fn error(msg: &[u8]) -> io::Result<()> {
    let (_, kind) = header(msg);
    if kind != NLMSG_ERROR || msg.len() < 20 {
        return Ok(());
    }
    match i32::from_ne_bytes([msg[16], msg[17], msg[18], msg[19]]) {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(-e)),
    }
}

/// The `CTRL_ATTR_FAMILY_ID` of the controller's answer.
fn family_id(msg: &[u8]) -> Option<u16> {
    let (len, _) = header(msg);
    let mut at = 20;
    while at + 4 <= len.min(msg.len()) {
        let alen = u16::from_ne_bytes([msg[at], msg[at + 1]]) as usize;
        let kind = u16::from_ne_bytes([msg[at + 2], msg[at + 3]]) & 0x3fff;
        if alen < 4 {
            return None;
        }
        if kind == CTRL_ATTR_FAMILY_ID && alen >= 6 {
            return Some(u16::from_ne_bytes([msg[at + 4], msg[at + 5]]));
        }
        at += align(alen);
    }
    None
}
