//! `ipvsadm-rs`: a drop-in replacement for ipvsadm 1.31.

mod cli;
mod format;
mod names;
mod strerror;

use std::io::{self, Write};
use std::process::ExitCode;

use ipvs_netlink::Handle;

use crate::cli::{Command, ListOptions};
use crate::format::list;
use crate::format::sort::{cmp_dests, cmp_services, glibc_msort};
use crate::names::{Names, Numeric, System};

/// The name messages use: `ipvsadm` when invoked through a link of that
/// name, else what argv[0] says.
fn program_name(argv0: Option<&str>) -> String {
    argv0
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "ipvsadm-rs".to_owned())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let prog = program_name(args.first().map(String::as_str));
    let code = match cli::parse(&prog, args.get(1..).unwrap_or(&[])) {
        Ok(cmd) => run(&cmd),
        Err(refusal) => {
            eprintln!("{}", refusal.message);
            refusal.code
        }
    };
    ExitCode::from(code as u8)
}

fn run(cmd: &Command) -> i32 {
    let mut handle = match strerror::open_handle() {
        Ok(h) => h,
        Err(code) => return code,
    };
    match cmd {
        Command::List(opts) => list_all(&mut handle, opts),
    }
}

/// `ipvsadm -L`: the version line, the titles, then every service with its
/// destinations, sorted as ipvsadm sorts.
fn list_all(handle: &mut Handle, opts: &ListOptions) -> i32 {
    let names: Box<dyn Names> = if opts.numeric {
        Box::new(Numeric)
    } else {
        Box::new(System::new())
    };
    let info = match handle.info() {
        Ok(info) => info,
        Err(e) => return strerror::report_list(&e),
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut text = list::version_line(&info);
    let mut services = match handle.services() {
        Ok(s) => s,
        Err(e) => {
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            return strerror::report_list(&e);
        }
    };
    if !opts.nosort {
        glibc_msort(&mut services, &cmp_services);
    }
    text.push_str(list::TITLE);
    if out.write_all(text.as_bytes()).is_err() {
        return 0;
    }
    for svc in &services {
        let mut dests = match handle.destinations(&svc.id) {
            Ok(d) => d,
            Err(e) => {
                let _ = out.flush();
                return strerror::report_list(&e);
            }
        };
        if !opts.nosort {
            glibc_msort(&mut dests, &cmp_dests);
        }
        let mut block = list::service_line(svc, names.as_ref());
        for d in &dests {
            block.push_str(&list::dest_line(&svc.id, d, names.as_ref()));
        }
        if out.write_all(block.as_bytes()).is_err() {
            // A closed pipe (`| head`) ends the listing quietly.
            return 0;
        }
    }
    let _ = out.flush();
    0
}
