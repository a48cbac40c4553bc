//! Runs a parsed command against the kernel, writing what ipvsadm 1.31
//! writes and returning what it returns.

use std::io::{BufRead, Write};

use ipvs_netlink::{
    AddressFamily, Daemon, DaemonState, Destination, ForwardMethod, Handle, Netmask, Op, Protocol,
    Service, ServiceFlags, ServiceId, Timeouts, TunnelFlags, TunnelType,
};

use crate::cli::parse::{DestArgs, SvcArgs, AF_INET6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};
use crate::cli::{self, Cmd, Entry, Stop};
use crate::format::fmt;
use crate::format::list;
use crate::format::sort::{cmp_dests, cmp_services, glibc_msort};
use crate::names::Names;
use ipvs_plan::messages as strerror;

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// `process_options` returned this value (0 or -1).
    Return(i32),
    /// The process exits with this code (ipvsadm called `exit`).
    Exit(i32),
}

/// Where input comes from and output goes (the standard streams, or
/// buffers in tests).
pub struct Out<'a> {
    /// Standard input (the rules of `-R`).
    pub input: &'a mut dyn BufRead,
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
    /// `--json`: list commands print one JSON document.
    pub json: bool,
}

impl Out<'_> {
    fn err(&mut self, text: &str) {
        let _ = self.out.flush();
        let _ = self.err.write_all(text.as_bytes());
        let _ = self.err.flush();
    }
}

/// ipvsadm's `process_options` for one invocation (argv after `argv[0]`).
pub fn process(
    handle: &mut Handle,
    prog: &str,
    args: &[String],
    reading_stdin: bool,
    io: &mut Out,
) -> Flow {
    run_parsed(handle, prog, cli::parse(prog, args), reading_stdin, io)
}

/// Runs what [`cli::parse`] made of a command line.
fn run_parsed(
    handle: &mut Handle,
    prog: &str,
    parsed: Result<Entry, Stop>,
    reading_stdin: bool,
    io: &mut Out,
) -> Flow {
    let entry = match parsed {
        Ok(e) => e,
        Err(Stop::Exit {
            stdout,
            stderr,
            code,
        }) => {
            let _ = io.out.write_all(stdout.as_bytes());
            io.err(&stderr);
            return Flow::Exit(code);
        }
        Err(Stop::Return { stderr }) => {
            io.err(&stderr);
            return Flow::Return(-1);
        }
    };
    run(handle, prog, &entry, reading_stdin, io)
}

fn run(handle: &mut Handle, prog: &str, e: &Entry, reading_stdin: bool, io: &mut Out) -> Flow {
    let result = match e.cmd {
        Cmd::List => {
            let conflicting = (e.has(cli::options::optc::CONNECTION)
                || e.has(cli::options::optc::TIMEOUT)
                || e.has(cli::options::optc::DAEMON))
                && (e.has(cli::options::optc::STATS)
                    || e.has(cli::options::optc::RATE)
                    || e.has(cli::options::optc::THRESHOLDS))
                || (e.has(cli::options::optc::TIMEOUT) || e.has(cli::options::optc::DAEMON))
                    && e.has(cli::options::optc::PERSISTENTCONN);
            if conflicting {
                io.err("options conflicts in the list command\n");
                return Flow::Exit(2);
            }
            if io.json {
                return crate::listjson::list(handle, e, io);
            }
            return if e.has(cli::options::optc::CONNECTION) {
                crate::conn::list(e.format, io)
            } else if e.has(cli::options::optc::SERVICE) {
                list_service(handle, &service_id(&e.svc), e.format, io)
            } else if e.has(cli::options::optc::TIMEOUT) {
                match handle.timeouts() {
                    Ok(t) => {
                        let _ = io.out.write_all(list::timeouts(&t).as_bytes());
                        Flow::Return(0)
                    }
                    Err(_) => Flow::Exit(1),
                }
            } else if e.has(cli::options::optc::DAEMON) {
                match handle.daemons() {
                    Ok(d) => {
                        let _ = io.out.write_all(list::daemons(&d).as_bytes());
                        Flow::Return(0)
                    }
                    Err(_) => Flow::Exit(1),
                }
            } else {
                list_all(handle, e.format, io)
            };
        }
        _ if io.json => {
            io.err("ipvsadm-rs: --json goes with the list commands (-L, -l, -c, --timeout, --daemon)\n");
            return Flow::Exit(2);
        }
        Cmd::Restore => return restore(handle, prog, reading_stdin, io),
        Cmd::Save => return list_all(handle, e.format | fmt::RULE, io),
        _ => match to_op(e) {
            Some(op) => handle
                .apply(std::slice::from_ref(&op))
                .and_then(|mut r| r.pop().unwrap_or(Ok(()))),
            None => Ok(()),
        },
    };
    match result {
        Ok(()) => Flow::Return(0),
        Err(err) => {
            io.err(&format!("{}\n", strerror::describe(&err)));
            Flow::Return(-1)
        }
    }
}

/// The kernel write a command makes, if it is one.
fn to_op(e: &Entry) -> Option<Op> {
    let id = || service_id(&e.svc);
    Some(match e.cmd {
        Cmd::Flush => Op::Flush,
        Cmd::Add => Op::AddService(service(&e.svc)),
        Cmd::Edit => Op::EditService(service(&e.svc)),
        Cmd::Del => Op::DeleteService(id()),
        Cmd::Zero => {
            // libipvs zeroes everything unless a service is named.
            let named = e.svc.fwmark != 0 || !e.svc.addr.is_unspecified() || e.svc.port != 0;
            Op::Zero(named.then(id))
        }
        Cmd::AddDest => Op::AddDestination(id(), destination(&e.dest)),
        Cmd::EditDest => Op::EditDestination(id(), destination(&e.dest)),
        Cmd::DelDest => {
            Op::DeleteDestination(id(), std::net::SocketAddr::new(e.dest.addr, e.dest.port))
        }
        Cmd::SetTimeouts => {
            Op::SetTimeouts(Timeouts::new(e.timeouts[0], e.timeouts[1], e.timeouts[2]))
        }
        Cmd::StartDaemon => Op::StartDaemon(daemon(e)),
        Cmd::StopDaemon => Op::StopDaemon(daemon(e)),
        Cmd::List | Cmd::Restore | Cmd::Save => return None,
    })
}

fn protocol(p: u16) -> Protocol {
    match p {
        IPPROTO_TCP => Protocol::Tcp,
        IPPROTO_UDP => Protocol::Udp,
        IPPROTO_SCTP => Protocol::Sctp,
        other => Protocol::Other(other),
    }
}

fn family(af: u16) -> AddressFamily {
    if af == AF_INET6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

/// The identity of the service the command line names.
pub fn service_id(s: &SvcArgs) -> ServiceId {
    if s.fwmark != 0 {
        ServiceId::fwmark(family(s.af), s.fwmark)
    } else {
        ServiceId::Inet {
            protocol: protocol(s.protocol),
            addr: s.addr,
            port: s.port,
        }
    }
}

/// The full service `-A`/`-E` send.
pub fn service(s: &SvcArgs) -> Service {
    let id = service_id(s);
    let netmask = match id.family() {
        AddressFamily::Inet => Netmask::V4(std::net::Ipv4Addr::from(s.netmask)),
        AddressFamily::Inet6 => Netmask::V6(s.netmask),
    };
    let mut svc = Service::new(id, s.sched_name.clone())
        .with_flags(ServiceFlags::from_bits_retain(s.flags))
        .with_netmask(netmask);
    svc.timeout = s.timeout;
    if !s.pe_name.is_empty() {
        svc = svc.with_persistence_engine(s.pe_name.clone());
    }
    svc
}

/// The full destination `-a`/`-e` send.
pub fn destination(d: &DestArgs) -> Destination {
    let mut dest = Destination::new(std::net::SocketAddr::new(d.addr, d.port))
        .forward(ForwardMethod::from_raw(d.conn_flags))
        .weight(d.weight as u32)
        .thresholds(d.u_threshold, d.l_threshold);
    dest.tunnel_type = Some(TunnelType::from_raw(d.tun_type));
    dest.tunnel_port = Some(d.tun_port);
    dest.tunnel_flags = Some(TunnelFlags::from_bits_retain(d.tun_flags));
    dest
}

fn daemon(e: &Entry) -> Daemon {
    let a = &e.daemon;
    let mut d = Daemon::new(DaemonState::from_raw(a.state), a.mcast_ifn.clone());
    d.sync_id = a.syncid;
    d.max_len = (a.sync_maxlen != 0).then_some(a.sync_maxlen);
    d.port = (a.mcast_port != 0).then_some(a.mcast_port);
    d.ttl = (a.mcast_ttl != 0).then_some(a.mcast_ttl);
    d.group = a.mcast_group;
    d
}

fn list_failure(err: &ipvs_netlink::Error, io: &mut Out) -> Flow {
    io.err(&format!("{}\n", strerror::describe(err)));
    Flow::Exit(1)
}

/// ipvsadm's `list_all`: the version line (not with `-S`), the titles and
/// every service, sorted unless `--nosort`.
pub fn list_all(handle: &mut Handle, format: u32, io: &mut Out) -> Flow {
    let names = crate::names::for_format(format);
    if format & fmt::RULE == 0 {
        match handle.info() {
            Ok(info) => {
                let _ = io.out.write_all(list::version_line(&info).as_bytes());
            }
            Err(e) => return list_failure(&e, io),
        }
    }
    let mut services = match handle.services() {
        Ok(s) => s,
        Err(e) => return list_failure(&e, io),
    };
    if format & fmt::NOSORT == 0 {
        glibc_msort(&mut services, &cmp_services);
    }
    let _ = io.out.write_all(list::title(format).as_bytes());
    for svc in &services {
        if let Err(flow) = print_service(handle, svc, format, names.as_ref(), io) {
            return flow;
        }
    }
    Flow::Return(0)
}

fn print_service(
    handle: &mut Handle,
    svc: &Service,
    format: u32,
    names: &dyn Names,
    io: &mut Out,
) -> Result<(), Flow> {
    let mut dests = handle
        .destinations(&svc.id)
        .map_err(|e| list_failure(&e, io))?;
    if format & fmt::NOSORT == 0 {
        glibc_msort(&mut dests, &cmp_dests);
    }
    let text = list::service_entry(svc, &dests, format, names);
    if io.out.write_all(text.as_bytes()).is_err() {
        // A closed pipe (`| head`) ends the listing quietly.
        return Err(Flow::Exit(0));
    }
    Ok(())
}

/// `-L -t ...`: one service, without the version line.
fn list_service(handle: &mut Handle, id: &ServiceId, format: u32, io: &mut Out) -> Flow {
    let names = crate::names::for_format(format);
    match handle.service(id) {
        Ok(Some(svc)) => {
            let _ = io.out.write_all(list::title(format).as_bytes());
            match print_service(handle, &svc, format, names.as_ref(), io) {
                Ok(()) => Flow::Return(0),
                Err(flow) => flow,
            }
        }
        Ok(None) => {
            io.err("No such service\n");
            Flow::Exit(1)
        }
        Err(e) => list_failure(&e, io),
    }
}

/// The words of one restore line as ipvsadm's `config_stream_read`
/// splits them: on space, tab, CR and LF, in tokens of at most 4096
/// bytes, without the word `ipvsadm`.
pub fn restore_tokens(line: &[u8]) -> Vec<String> {
    line.split(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .filter(|w| !w.is_empty())
        .flat_map(|w| w.chunks(4096))
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .filter(|w| w != "ipvsadm")
        .collect()
}

/// Whether ipvsadm drops a last line that has no newline: its reader
/// gives up when it meets the end of input while skipping a second
/// whitespace character.
fn dropped_at_eof(line: &[u8]) -> bool {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r');
    line.iter().rev().take_while(|b| ws(b)).count() >= 2 || line.iter().all(ws)
}

/// The writes of a restore waiting to be sent, with their line numbers.
#[derive(Default)]
struct Pending {
    ops: Vec<Op>,
    lines: Vec<usize>,
}

impl Pending {
    /// Sends the waiting writes pipelined and prints each failure in line
    /// order, as ipvsadm prints them line by line. Returns the last
    /// line's result, or the process exit when the kernel's answers were
    /// lost.
    fn flush(
        &mut self,
        handle: &mut Handle,
        prog: &str,
        io: &mut Out,
    ) -> Result<Option<i32>, Flow> {
        if self.ops.is_empty() {
            return Ok(None);
        }
        let outcome = handle.apply(&self.ops);
        let ops = std::mem::take(&mut self.ops);
        let lines = std::mem::take(&mut self.lines);
        let (first, last_line) = (lines[0], lines[lines.len() - 1]);
        let results = match outcome {
            Ok(r) => r,
            Err(err) => {
                io.err(&format!(
                    "{prog}: lines {first} to {last_line} of the restore were sent but their outcome is unknown: {err}\n"
                ));
                report_fates(handle, &ops, &lines, None, io);
                io.err(&format!(
                    "{prog}: the restore stopped after line {last_line}\n"
                ));
                return Err(Flow::Exit(1));
            }
        };
        let mut last = 0;
        let mut lost = false;
        for result in &results {
            last = match result {
                Ok(()) => 0,
                Err(ipvs_netlink::Error::ReplyLost { .. }) => {
                    lost = true;
                    -1
                }
                Err(err) => {
                    io.err(&format!("{}\n", strerror::describe(err)));
                    -1
                }
            };
        }
        if lost {
            io.err(&format!(
                "{prog}: the kernel's replies to some of lines {first} to {last_line} were lost (receive buffer overflow); their fates:\n"
            ));
            report_fates(handle, &ops, &lines, Some(&results), io);
            io.err(&format!(
                "{prog}: the restore stopped after line {last_line}\n"
            ));
            return Err(Flow::Exit(1));
        }
        Ok(Some(last))
    }
}

/// What an op changes, for telling whether a later op in flight may have
/// changed it again.
#[derive(PartialEq)]
enum Target<'a> {
    Service(&'a ServiceId),
    Dest(&'a ServiceId, std::net::SocketAddr),
    /// Flush: every service.
    All,
    /// Counters, timeouts, daemons: no service or real server.
    Other,
}

fn target(op: &Op) -> Target<'_> {
    match op {
        Op::AddService(s) | Op::EditService(s) => Target::Service(&s.id),
        Op::DeleteService(id) => Target::Service(id),
        Op::AddDestination(id, d) | Op::EditDestination(id, d) => Target::Dest(id, d.socket_addr()),
        Op::DeleteDestination(id, addr) => Target::Dest(id, *addr),
        Op::Flush => Target::All,
        _ => Target::Other,
    }
}

/// Whether what `later` changes may change what `earlier` changed.
fn overlaps(earlier: &Target, later: &Target) -> bool {
    match (earlier, later) {
        (Target::Other, _) | (_, Target::Other) => false,
        (Target::All, _) | (_, Target::All) => true,
        (Target::Service(a), Target::Service(b)) => a == b,
        // Deleting or re-adding a service takes its real servers with it.
        (Target::Dest(a, _), Target::Service(b)) => a == b,
        (Target::Service(_), Target::Dest(..)) => false,
        (Target::Dest(a, x), Target::Dest(b, y)) => a == b && x == y,
    }
}

/// What became of a line whose write was in flight.
enum Fate {
    /// The kernel acknowledged it, or the table holds what it asked for.
    Applied(&'static str),
    /// The kernel refused it, or the table does not hold what it asked
    /// for (and no later line could have changed that).
    NotApplied(String),
    /// Cannot be told.
    Unknown(&'static str),
}

/// After lost replies: says, for each line that was in flight, whether it
/// was applied. A line whose result came back (`known`) has that result:
/// an error reply means not applied; no error reply before the last
/// answered request means applied. For a line whose reply was lost, the
/// table is read back: applied when it holds what the line asked for
/// (the settings of an added or edited service or real server, the
/// absence of a deleted one), not applied when it does not. Unknown
/// when a later line in flight that may have been applied changes the
/// same service or real server, when the table cannot be read, and for
/// flush, zero, timeout and daemon lines.
///
/// "Not applied" is certain. "Applied" from the table means the table
/// holds what the line asks for: a line that asked for what was already
/// there (say, deleting a real server that never existed) reads as
/// applied.
fn report_fates(
    handle: &mut Handle,
    ops: &[Op],
    lines: &[usize],
    known: Option<&[ipvs_netlink::Result<()>]>,
    io: &mut Out,
) {
    // From the last line back: a later line blocks the table's answer
    // for an earlier one unless it certainly changed nothing.
    let mut fates: Vec<Fate> = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate().rev() {
        let fate = match known.and_then(|k| k.get(i)) {
            Some(Ok(())) => Fate::Applied(""),
            Some(Err(ipvs_netlink::Error::ReplyLost { .. })) | None => {
                let here = target(op);
                let blocked = ops[i + 1..]
                    .iter()
                    .zip(fates.iter().rev())
                    .any(|(later, fate)| {
                        !matches!(fate, Fate::NotApplied(_)) && overlaps(&here, &target(later))
                    });
                if blocked {
                    Fate::Unknown(" (reply lost; a later line changed the same entry)")
                } else {
                    table_fate(handle, op)
                }
            }
            Some(Err(e)) => Fate::NotApplied(format!(": {}", strerror::describe(e))),
        };
        fates.push(fate);
    }
    for (line, fate) in lines.iter().zip(fates.iter().rev()) {
        let text = match fate {
            Fate::Applied(why) => format!("applied{why}"),
            Fate::NotApplied(why) => format!("not applied{why}"),
            Fate::Unknown(why) => format!("unknown{why}"),
        };
        io.err(&format!("line {line}: {text}\n"));
    }
}

/// Whether the kernel's table holds what `op` asked for.
fn table_fate(handle: &mut Handle, op: &Op) -> Fate {
    let yes_no = |held: bool| {
        if held {
            Fate::Applied(" (reply lost; the table holds it)")
        } else {
            Fate::NotApplied(" (reply lost; not in the table)".to_owned())
        }
    };
    let unknown = Fate::Unknown(" (reply lost; the table cannot be read)");
    match op {
        Op::AddService(s) | Op::EditService(s) => match handle.service(&s.id) {
            Ok(now) => yes_no(now.is_some_and(|now| ipvs_plan::same_service(&now, s))),
            Err(_) => unknown,
        },
        Op::DeleteService(id) => match handle.service(id) {
            Ok(now) => yes_no(now.is_none()),
            Err(_) => unknown,
        },
        Op::AddDestination(id, d) | Op::EditDestination(id, d) => match handle.destinations(id) {
            Ok(list) => yes_no(
                list.iter()
                    .any(|x| x.socket_addr() == d.socket_addr() && ipvs_plan::same_dest(x, d)),
            ),
            // ESRCH: the service is gone, and its real servers with it.
            Err(e) if e.errno() == Some(libc::ESRCH) => yes_no(false),
            Err(_) => unknown,
        },
        Op::DeleteDestination(id, addr) => match handle.destinations(id) {
            Ok(list) => yes_no(list.iter().all(|x| x.socket_addr() != *addr)),
            Err(e) if e.errno() == Some(libc::ESRCH) => yes_no(true),
            Err(_) => unknown,
        },
        _ => Fate::Unknown(" (reply lost; not a service or real server)"),
    }
}

/// `-R`: every line of stdin as its own invocation. Kernel errors print
/// their message and the next line runs; the result is the last line's.
///
/// Writes are not sent one by one: consecutive ones are pipelined (up to
/// [`ipvs_netlink::MAX_IN_FLIGHT`] per datagram) and their errors printed
/// in line order. Before any other line (a listing, a parse error, the
/// end of input) the waiting writes are sent, so what is printed and
/// applied is what ipvsadm would print and apply, in the same order.
fn restore(handle: &mut Handle, prog: &str, reading_stdin: bool, io: &mut Out) -> Flow {
    if reading_stdin {
        io.err(&format!(
            "Try `{prog} -h' or '{prog} --help' for more information.\n"
        ));
        return Flow::Exit(255);
    }
    let mut result = 0;
    let mut pending = Pending::default();
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        let read = io.input.read_until(b'\n', &mut line);
        match read {
            Ok(0) => break,
            Ok(_) => number += 1,
            Err(e) => {
                if let Err(flow) = pending.flush(handle, prog, io) {
                    return flow;
                }
                io.err(&format!("{prog}: cannot read the rules: {e}\n"));
                return Flow::Exit(1);
            }
        }
        if !line.ends_with(b"\n") && dropped_at_eof(&line) {
            break;
        }
        let words = restore_tokens(&line);
        if words.is_empty() {
            continue;
        }
        let parsed = cli::parse(prog, &words);
        match parsed.as_ref().ok().and_then(to_op) {
            Some(op) => {
                pending.ops.push(op);
                pending.lines.push(number);
                if pending.ops.len() >= ipvs_netlink::MAX_IN_FLIGHT {
                    match pending.flush(handle, prog, io) {
                        Ok(r) => result = r.unwrap_or(result),
                        Err(flow) => return flow,
                    }
                }
            }
            None => {
                if let Err(flow) = pending.flush(handle, prog, io) {
                    return flow;
                }
                match run_parsed(handle, prog, parsed, true, io) {
                    Flow::Return(r) => result = r,
                    exit @ Flow::Exit(_) => return exit,
                }
            }
        }
    }
    match pending.flush(handle, prog, io) {
        Ok(r) => Flow::Return(r.unwrap_or(result)),
        Err(flow) => flow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_lines_drop_the_word_ipvsadm_and_split_on_whitespace() {
        assert_eq!(
            restore_tokens(b"ipvsadm -A\t-t 10.0.0.1:80 -s ipvsadm rr\r\n"),
            ["-A", "-t", "10.0.0.1:80", "-s", "rr"]
        );
        assert!(restore_tokens(b"   \n").is_empty());
        assert_eq!(restore_tokens(b"# comment").len(), 2);
    }

    #[test]
    fn an_unterminated_last_line_is_dropped_after_two_blanks() {
        assert!(!dropped_at_eof(b"-C"));
        assert!(!dropped_at_eof(b"-C "));
        assert!(dropped_at_eof(b"-C  "));
        assert!(dropped_at_eof(b" \t"));
    }
}
