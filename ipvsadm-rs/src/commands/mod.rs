//! Runs a parsed command against the kernel, writing what ipvsadm 1.31
//! writes and returning what it returns: the dispatcher ([`process`]),
//! and one module per kind of command.
//!
//! - [`convert`]: the parsed arguments as the library's types;
//! - [`list`]: `-L`/`-S` in ipvsadm's text formats, [`json`] with `--json`;
//! - [`conn`]: `-L -c`, the connection table from /proc;
//! - [`restore`]: `-R`, pipelined, with [`ipvs_plan::fates`] after lost replies;
//! - [`apply`]: `--apply`/`--diff`, through the planner;
//! - [`sysctls`]: `--sysctls`, IPVS's sysctls;
//! - `metrics`: `--metrics`, a Prometheus exporter (feature `metrics`).

pub mod apply;
pub mod conn;
pub mod convert;
pub mod json;
pub mod list;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod restore;
pub mod sysctls;

use ipvs_netlink::Handle;
use ipvsadm_compat::messages as strerror;

use crate::cli::{self, Cmd, Entry, Stop};
use crate::format::fmt;
use crate::io::{Flow, Out};
use convert::{service_id, to_op};
use list::{list_all, list_service};

/// `-L -t VIP:PORT -r RIP:PORT` (under our own name, see
/// [`cli::parse`]): the one real server to list.
pub(crate) fn only_server(e: &Entry) -> Option<std::net::SocketAddr> {
    e.has(cli::options::optc::SERVER)
        .then(|| std::net::SocketAddr::new(e.dest.addr, e.dest.port))
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
                return json::list(handle, e, io);
            }
            return if e.has(cli::options::optc::CONNECTION) {
                conn::list(e.format, io)
            } else if e.has(cli::options::optc::SERVICE) {
                list_service(handle, &service_id(&e.svc), only_server(e), e.format, io)
            } else if e.has(cli::options::optc::TIMEOUT) {
                match handle.timeouts() {
                    Ok(t) => {
                        let _ = io
                            .out
                            .write_all(crate::format::list::timeouts(&t).as_bytes());
                        Flow::Return(0)
                    }
                    Err(_) => Flow::Exit(1),
                }
            } else if e.has(cli::options::optc::DAEMON) {
                match handle.daemons() {
                    Ok(d) => {
                        let _ = io
                            .out
                            .write_all(crate::format::list::daemons(&d).as_bytes());
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
        Cmd::Restore => {
            return restore::restore(handle, prog, reading_stdin, io, |h, parsed, io| {
                run_parsed(h, prog, parsed, true, io)
            })
        }
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
