//! `ipvsadm-rs`: a drop-in replacement for ipvsadm 1.31.
//!
//! Invoked through a link named `ipvsadm-save` or `ipvsadm-restore` it
//! behaves as Debian's scripts of those names.

use std::io::{self, Write};
use std::process::ExitCode;

use ipvsadm_rs::cli::args::{self, Command, Invocation, Run};
use ipvsadm_rs::commands::{self, apply};
use ipvsadm_rs::io::{Flow, Out};
use ipvsadm_rs::{init, netns};

/// On musl, dlmalloc instead of musl's own allocator, which unmaps a
/// group of blocks as soon as it is free: `-Ln` of 10,000 services made
/// 11,400 `mmap` and as many `munmap` calls (each `mmap` then costs a
/// page fault), more than half of its time in the test VM.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let argv0 = args
        .first()
        .cloned()
        .unwrap_or_else(|| "ipvsadm".to_owned());
    let rest = args.get(1..).unwrap_or(&[]);
    let base = argv0.rsplit('/').next().unwrap_or(&argv0);
    let code = match base {
        "ipvsadm-save" => save_script(base, rest),
        "ipvsadm-restore" => restore_script(),
        _ => ipvsadm(&argv0, rest),
    };
    ExitCode::from(code as u8)
}

/// ipvsadm's `main`: initialise (before looking at the arguments, as
/// 1.31 does), list everything when there are no arguments, else process
/// them.
fn ipvsadm(prog: &str, args: &[String]) -> i32 {
    let stdin = io::stdin();
    ipvsadm_with_input(prog, args, &mut stdin.lock())
}

/// [`ipvsadm`] with `-R` reading from `input`: parse, then run.
fn ipvsadm_with_input(prog: &str, args: &[String], input: &mut dyn io::BufRead) -> i32 {
    if let Some(text) = args::without_kernel(prog, args) {
        print!("{text}");
        return 0;
    }
    match args::parse(args) {
        Ok(Invocation::Print(text)) => {
            print!("{}", text.text());
            0
        }
        Ok(Invocation::Run(run)) => {
            if let Command::Ipvsadm(words) = &run.command {
                if let Some((message, code)) = args::typo(prog, words) {
                    eprint!("{message}");
                    return code;
                }
            }
            if let Command::Metrics(addr) = &run.command {
                return metrics(prog, &run, addr);
            }
            run_ipvs(prog, &run, input)
        }
        Err(message) => {
            eprintln!("ipvsadm-rs: {message}");
            2
        }
    }
}

/// Runs a command line that acts on IPVS, in its namespace.
fn run_ipvs(prog: &str, run: &Run, input: &mut dyn io::BufRead) -> i32 {
    if let Some(Err(message)) = run.netns.as_deref().map(netns::enter) {
        eprintln!("ipvsadm-rs: {message}");
        return 2;
    }
    // The streams themselves, not their locks: a lock held here for the
    // whole command would block every other thread's first write for
    // good (the live mode's sync thread logs to stderr: issue 29's hang).
    let mut out = io::BufWriter::new(io::stdout());
    let mut err = io::stderr();
    // `--json=compact`: the document is made whole, then written on one line.
    let mut document = Vec::new();
    let compact = run.compact && matches!(run.command, Command::Ipvsadm(_) | Command::Sysctls(_));
    let mut io = Out {
        input,
        out: if compact {
            &mut document as &mut dyn Write
        } else {
            &mut out
        },
        err: &mut err,
        json: run.json,
    };
    let code = match &run.command {
        // Its command line and dump are checked before IPVS is opened.
        Command::FromK8s(args) => from_k8s(args, &mut io),
        Command::Apply(apply) => match init::open_handle_as(prog) {
            Ok(mut handle) => match apply {
                Ok(a) => apply::run(
                    &mut handle,
                    &a.cmd,
                    (a.dry_run, a.keep_going),
                    &a.file,
                    &mut io,
                ),
                Err(msg) => {
                    let _ = writeln!(io.err, "ipvsadm-rs: {msg}");
                    2
                }
            },
            Err(message) => {
                let _ = io.err.write_all(message.as_bytes());
                return 2;
            }
        },
        // Taken before the namespace is entered (`metrics`).
        Command::Metrics(_) => 2,
        Command::Top(Err(msg)) => {
            let _ = writeln!(io.err, "ipvsadm-rs: {msg}");
            2
        }
        #[cfg(feature = "top")]
        Command::Top(Ok(args)) => match init::open_handle_as(prog) {
            Ok(mut handle) => ipvsadm_rs::top::run(&mut handle, args, run.json, &mut *io.out),
            Err(message) => {
                let _ = io.err.write_all(message.as_bytes());
                return 2;
            }
        },
        // Without the `top` feature, `--top` is refused with a clear word.
        #[cfg(not(feature = "top"))]
        Command::Top(Ok(_)) => {
            let _ = writeln!(
                io.err,
                "ipvsadm-rs: --top: this ipvsadm-rs was built without the top feature"
            );
            2
        }
        Command::Sysctls(Err(msg)) => {
            let _ = writeln!(io.err, "ipvsadm-rs: {msg}");
            2
        }
        // Opening IPVS first loads the module, as for a listing.
        Command::Sysctls(Ok(())) => match init::open_handle_as(prog) {
            Ok(mut handle) => commands::sysctls::run(&mut handle, &mut io),
            Err(message) => {
                let _ = io.err.write_all(message.as_bytes());
                return 2;
            }
        },
        Command::Ipvsadm(args) => {
            let mut handle = match init::open_handle_as(prog) {
                Ok(h) => h,
                Err(message) => {
                    let _ = io.err.write_all(message.as_bytes());
                    return 2;
                }
            };
            let flow = if args.is_empty() && run.json {
                commands::process(&mut handle, prog, &["-L".to_owned()], false, &mut io)
            } else if args.is_empty() {
                commands::list::list_all(&mut handle, 0, &mut io)
            } else {
                commands::process(&mut handle, prog, args, false, &mut io)
            };
            match flow {
                Flow::Return(r) | Flow::Exit(r) => r,
            }
        }
    };
    let _ = io.out.flush();
    if compact {
        let text = String::from_utf8_lossy(&document);
        let _ = out.write_all(ipvsadm_rs::format::json::compact(&text).as_bytes());
    }
    let _ = out.flush();
    code
}

/// `--metrics ADDR:PORT`: its port is opened where ipvsadm-rs starts,
/// then `--netns` is entered and its table served (until killed).
#[cfg(feature = "metrics")]
fn metrics(prog: &str, run: &Run, args: &Result<args::MetricsArgs, String>) -> i32 {
    let (addr, state, families) = match args {
        Ok(a) if !run.json => (&a.addr, a.state.clone(), a.families),
        Ok(_) => {
            eprintln!("ipvsadm-rs: --json does not go with --metrics");
            return 2;
        }
        Err(message) => {
            eprintln!("ipvsadm-rs: {message}");
            return 2;
        }
    };
    let listener = match std::net::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ipvsadm-rs: --metrics: cannot listen on {addr}: {e}");
            return 2;
        }
    };
    if let Some(Err(message)) = run.netns.as_deref().map(netns::enter) {
        eprintln!("ipvsadm-rs: {message}");
        return 2;
    }
    let handle = match init::open_handle_as(prog) {
        Ok(h) => h,
        Err(message) => {
            eprint!("{message}");
            return 2;
        }
    };
    match commands::metrics::run(listener, handle, state, families) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("ipvsadm-rs: {message}");
            1
        }
    }
}

/// Without the `metrics` feature, `--metrics` is refused with a clear word.
#[cfg(not(feature = "metrics"))]
fn metrics(_: &str, _: &Run, _: &Result<args::MetricsArgs, String>) -> i32 {
    eprintln!("ipvsadm-rs: --metrics: this ipvsadm-rs was built without the metrics feature");
    2
}

/// Runs `--from-k8s` (the crate ipvs-k8s).
#[cfg(feature = "k8s")]
fn from_k8s(args: &[String], io: &mut Out) -> i32 {
    match ipvsadm_rs::cli::from_k8s::parse(args) {
        Some(Ok(parsed)) if parsed.cleanup => {
            let mut k8s_io = ipvs_k8s::Io {
                input: &mut *io.input,
                out: &mut *io.out,
                err: &mut *io.err,
            };
            ipvs_k8s::cleanup::run(init::open_handle, &parsed, &mut k8s_io)
        }
        Some(Ok(parsed)) if parsed.source.is_none() => {
            let _ = io.out.flush();
            ipvs_k8s::live::run(init::open_handle, &parsed)
        }
        Some(Ok(parsed)) => {
            let mut k8s_io = ipvs_k8s::Io {
                input: &mut *io.input,
                out: &mut *io.out,
                err: &mut *io.err,
            };
            ipvs_k8s::sync::run(init::open_handle, &parsed, &mut k8s_io)
        }
        Some(Err(msg)) => {
            let _ = writeln!(io.err, "ipvsadm-rs: {msg}");
            2
        }
        None => 2,
    }
}

/// Without the `k8s` feature, `--from-k8s` is refused with a clear word.
#[cfg(not(feature = "k8s"))]
fn from_k8s(_: &[String], io: &mut Out) -> i32 {
    let _ = writeln!(
        io.err,
        "ipvsadm-rs: --from-k8s: this ipvsadm-rs was built without the k8s feature"
    );
    2
}

/// Debian's `ipvsadm-save [-n]`.
fn save_script(name: &str, args: &[String]) -> i32 {
    let mut numeric = false;
    for arg in args {
        if arg == "-n" {
            numeric = true;
        } else if arg.starts_with('-') {
            eprintln!("{name}: Script to save the IPVS table to stdout.");
            eprintln!("   With the -n option, prints out the table in numeric format.");
            return 1;
        }
    }
    let mut save = vec!["-S".to_owned()];
    if numeric {
        save.push("-n".to_owned());
    }
    ipvsadm("ipvsadm", &save)
}

/// Debian's `ipvsadm-restore`: drop `#` lines, flush the table, then
/// restore what is left.
fn restore_script() -> i32 {
    let limit = match ipvsadm_compat::input::max_input() {
        Ok(n) => n,
        Err(msg) => {
            eprintln!("ipvsadm-restore: {msg}");
            return 2;
        }
    };
    let input = match ipvsadm_compat::input::read_all(&mut io::stdin(), limit) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            eprintln!(
                "ipvsadm-restore: {}",
                ipvsadm_compat::input::too_long("the rules", limit)
            );
            return 2;
        }
        Err(e) => {
            eprintln!("ipvsadm-restore: cannot read the rules: {e}");
            return 1;
        }
    };
    let text = String::from_utf8_lossy(&input);
    let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let mut rules = kept.join("\n");
    // "$(grep ...)" drops trailing newlines; echo adds one.
    while rules.ends_with('\n') {
        rules.pop();
    }
    rules.push('\n');
    // The script goes on whatever -C returns; its status is the restore's.
    ipvsadm("ipvsadm", &["-C".to_owned()]);
    ipvsadm_with_input("ipvsadm", &["-R".to_owned()], &mut rules.as_bytes())
}
