//! `--apply FILE [--dry-run]` and `--diff FILE` (read by
//! [`crate::cli::args`]): make the kernel's table
//! equal to a restore-format file (as `-Sn` prints it), or to the table
//! document `-Ln --json` prints, with the fewest writes, or tell whether
//! it already is.
//!
//! Unlike `ipvsadm-restore` (flush, then restore), services and real
//! servers that stay keep their connections and counters: what differs
//! is edited in place. The whole table is in scope: services the file
//! does not name are deleted.
//!
//! Thresholds: `-S` leaves `-x`/`-y` out, as 1.31 does, so a saved table
//! does not say them. A real-server line without `-x` (or `-y`) leaves
//! that threshold as the kernel has it; `-x 0` (`-y 0`) clears it. So
//! `ipvsadm-rs -Sn | ipvsadm-rs --diff -` is clean on any table, and
//! `-Sn` then `--apply` keeps the thresholds instead of zeroing them.
//! (`-S` itself stays byte-identical to 1.31's.)

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;

use ipvs_netlink::{scheduler, Handle, Op, ServiceId};

use super::convert;
use super::restore::{read_words, Read, Words, MAX_WORDS};
use crate::cli::options::optc;
use crate::cli::{self, Cmd};
use crate::format::json;
use crate::io::Out;
use ipvs_plan::{current_table, plan, VirtualServer};
use ipvsadm_compat::input;
use ipvsadm_compat::messages as strerror;
use ipvsadm_compat::rules::op_line;

/// Which extension command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Apply { dry_run: bool },
    Diff,
}

/// The table a restore-format text describes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// The services and real servers, in the file's order.
    pub table: Vec<VirtualServer>,
    /// The real servers whose line does not give `-x` (first) or `-y`
    /// (second): that threshold is left as the kernel has it.
    pub unsaid: HashMap<(ServiceId, SocketAddr), (bool, bool)>,
}

impl Desired {
    /// The table to plan towards: each threshold the file does not give
    /// taken from the kernel's `current` table.
    pub fn against(mut self, current: &[VirtualServer]) -> Vec<VirtualServer> {
        let now: HashMap<(ServiceId, SocketAddr), _> = current
            .iter()
            .flat_map(|v| {
                v.dests
                    .iter()
                    .map(move |d| ((v.service.id, d.socket_addr()), d))
            })
            .collect();
        for v in &mut self.table {
            for d in &mut v.dests {
                let key = (v.service.id, d.socket_addr());
                let (Some(&(upper, lower)), Some(have)) = (self.unsaid.get(&key), now.get(&key))
                else {
                    continue;
                };
                if upper {
                    d.upper_threshold = have.upper_threshold;
                }
                if lower {
                    d.lower_threshold = have.lower_threshold;
                }
            }
        }
        self.table
    }
}

/// Reads the desired table from `input`, at most `limit` bytes
/// ([`input::max_input`]): a table document of `ipvsadm-rs -Ln --json`
/// when its first byte other than a blank is `{` or `[` (JSON:
/// [`read_json_table`]),
/// else restore lines ([`read_table`]).
pub fn read_desired(input: &mut dyn BufRead, limit: u64) -> Result<Desired, String> {
    let first = input
        .fill_buf()
        .map_err(|e| format!("cannot read the table: {e}"))?
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{' | b'[')) {
        read_json_table(input, limit)
    } else {
        read_table(input, limit)
    }
}

/// Reads the desired table from a table document of `ipvsadm-rs -Ln
/// --json` ([`json::read_table`]) of at most `limit` bytes: the whole
/// document is read first ([`input::read_all`]: the bound and one piece
/// in memory, no more), then parsed. A threshold the document does not
/// give is left as the kernel has it, as for restore lines; a service or
/// real server given twice is refused.
pub fn read_json_table(input: &mut dyn BufRead, limit: u64) -> Result<Desired, String> {
    let text = match input::read_all(input, limit) {
        Ok(Some(text)) => text,
        Ok(None) => return Err(input::too_long("the table", limit)),
        Err(e) => return Err(format!("cannot read the table: {e}")),
    };
    let services = json::read_table(&text)?;
    drop(text);
    let mut unsaid = HashMap::new();
    let mut table: Vec<VirtualServer> = Vec::with_capacity(services.len());
    let mut seen = std::collections::HashSet::new();
    for (i, s) in services.into_iter().enumerate() {
        let id = s.service.id;
        if !seen.insert(id) {
            return Err(format!("services[{i}]: service {id} given twice"));
        }
        let mut dests = Vec::with_capacity(s.destinations.len());
        let mut addrs = std::collections::HashSet::new();
        for d in s.destinations {
            let addr = d.destination.socket_addr();
            if !addrs.insert(addr) {
                return Err(format!(
                    "services[{i}]: real server {addr} of {id} given twice"
                ));
            }
            if !d.upper_given || !d.lower_given {
                unsaid.insert((id, addr), (!d.upper_given, !d.lower_given));
            }
            dests.push(d.destination);
        }
        table.push(VirtualServer {
            service: s.service,
            dests,
        });
    }
    Ok(Desired { table, unsaid })
}

/// What [`read_table`] says of JSON that [`read_desired`] did not see
/// (after more blanks than it looks at).
const JSON_AFTER_BLANKS: &str = "a JSON document, not restore lines: a table document of `ipvsadm-rs -Ln --json` must begin within the first 8 KiB";

/// Reads the desired table from a restore-format text of at most
/// `limit` bytes ([`input::max_input`]): `-A` and `-a` lines only.
pub fn read_table(input: &mut dyn BufRead, limit: u64) -> Result<Desired, String> {
    let mut unsaid = HashMap::new();
    let mut table: Vec<VirtualServer> = Vec::new();
    let mut index: HashMap<ServiceId, usize> = HashMap::new();
    let mut words = Words::new();
    let mut number = 0;
    let mut budget = limit;
    loop {
        match read_words(input, &mut words, &mut budget) {
            Ok(Read::End) => break,
            // Unlike 1.31's restore, a last line without a newline is read
            // whatever its blanks.
            Ok(Read::Line { .. }) => number += 1,
            Ok(Read::TooLong) => return Err(input::too_long("the table", limit)),
            Ok(Read::TooManyWords) => {
                return Err(format!("line {}: more than {MAX_WORDS} words", number + 1))
            }
            Err(e) => return Err(format!("cannot read the table: {e}")),
        }
        if words.is_empty() || words[0].starts_with('#') {
            continue;
        }
        if number == 1 && (words[0].starts_with('{') || words[0].starts_with('[')) {
            return Err(JSON_AFTER_BLANKS.to_owned());
        }
        let entry = match cli::parse("ipvsadm", &words) {
            Ok(e) => e,
            Err(cli::Stop::Exit { stderr, .. }) | Err(cli::Stop::Return { stderr }) => {
                return Err(format!("line {number}: {}", stderr.trim_end()))
            }
        };
        match entry.cmd {
            Cmd::Add => {
                let service = convert::service(&entry.svc);
                if index.insert(service.id, table.len()).is_some() {
                    return Err(format!("line {number}: service {} given twice", service.id));
                }
                table.push(VirtualServer {
                    service,
                    dests: Vec::new(),
                });
            }
            Cmd::AddDest => {
                let id = convert::service_id(&entry.svc);
                let Some(&i) = index.get(&id) else {
                    return Err(format!(
                        "line {number}: real server of {id}, a service no -A line gives before"
                    ));
                };
                let dest = convert::destination(&entry.dest);
                let upper = !entry.has(optc::UTHRESHOLD);
                let lower = !entry.has(optc::LTHRESHOLD);
                if upper || lower {
                    unsaid.insert((id, dest.socket_addr()), (upper, lower));
                }
                if table[i]
                    .dests
                    .iter()
                    .any(|d| d.socket_addr() == dest.socket_addr())
                {
                    return Err(format!(
                        "line {number}: real server {} of {id} given twice",
                        dest.socket_addr()
                    ));
                }
                table[i].dests.push(dest);
            }
            _ => {
                return Err(format!(
                    "line {number}: only -A and -a lines describe a table"
                ))
            }
        }
    }
    Ok(Desired { table, unsaid })
}

/// Runs `--apply`/`--diff` (parsed by [`crate::cli::args`]): exit 0 when done (or,
/// for `--diff`, when equal), 1 when `--diff` found a difference or a
/// write failed, 2 for a bad file.
///
/// `--apply` is all or nothing where it can be: every line is read before
/// the first write, and when a write fails the writes that went through
/// are undone ([`undo`]), so the table is the old one (or, if undoing
/// fails too, the message says it is neither). `keep_going`
/// (`--keep-going`) keeps them, as before.
pub fn run(
    handle: &mut Handle,
    cmd: &str,
    (dry_run, keep_going): (bool, bool),
    file: &str,
    io: &mut Out,
) -> i32 {
    let mode = if cmd == "--diff" {
        Mode::Diff
    } else {
        Mode::Apply { dry_run }
    };
    let desired = match input::max_input() {
        Err(msg) => Err(msg),
        Ok(limit) if file == "-" => read_desired(io.input, limit),
        Ok(limit) => match std::fs::File::open(file) {
            Ok(f) => read_desired(&mut BufReader::new(f), limit),
            Err(e) => Err(format!("cannot open {file}: {e}")),
        },
    };
    let desired = match desired {
        Ok(t) => t,
        Err(msg) => {
            let _ = writeln!(io.err, "ipvsadm-rs: {cmd} {file}: {msg}");
            return 2;
        }
    };
    let current = match current_table(handle) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(io.err, "{}", strerror::describe(&e));
            return 1;
        }
    };
    let desired = desired.against(&current);
    // read_table refuses a service or real server given twice, naming its
    // line; the planner's own refusal is the same, without the line.
    let planned = match plan(&desired, &current, |_| true) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(io.err, "ipvsadm-rs: {cmd} {file}: {e}");
            return 2;
        }
    };
    let missing = missing_schedulers(&planned.ops, scheduler::availability);
    for (op, name) in &missing {
        let _ = writeln!(
            io.err,
            "ipvsadm-rs: {cmd} {file}: {}: this kernel offers no scheduler {name} (no module ip_vs_{name}: see `modinfo ip_vs_{name}`)",
            op_line(op)
        );
    }
    match mode {
        Mode::Diff => {
            let _ = io
                .out
                .write_all(diff_text(&planned.ops, &current).as_bytes());
            i32::from(!planned.ops.is_empty())
        }
        Mode::Apply { dry_run: true } => {
            for op in &planned.ops {
                let _ = writeln!(io.out, "{}", op_line(op));
            }
            i32::from(!missing.is_empty())
        }
        Mode::Apply { dry_run: false } if !missing.is_empty() && !keep_going => {
            let _ = writeln!(
                io.err,
                "ipvsadm-rs: --apply {file}: nothing was written: the table is the old one (--keep-going writes the rest)"
            );
            1
        }
        Mode::Apply { dry_run: false } => {
            write_plan(handle, &planned.ops, &current, keep_going, file, io)
        }
    }
}

/// The writes of `ops` that name a scheduler `offered` says the kernel
/// does not have ([`scheduler::Availability::Missing`]), with that name:
/// the kernel would refuse each ("No such file or directory"). A
/// scheduler that cannot be told ([`scheduler::Availability::Unknown`])
/// is left to the kernel. `offered` reads files: it is asked once per
/// scheduler name, not once per write.
fn missing_schedulers(
    ops: &[Op],
    offered: impl Fn(&str) -> scheduler::Availability,
) -> Vec<(&Op, String)> {
    let mut known: HashMap<&str, bool> = HashMap::new();
    ops.iter()
        .filter_map(|op| match op {
            Op::AddService(s) | Op::EditService(s) => {
                let name = s.scheduler.as_str();
                let works = *known
                    .entry(name)
                    .or_insert_with(|| offered(name).may_work());
                (!works).then(|| (op, s.scheduler.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Sends `ops` (planned from `current`); on a failed write, prints each
/// failure, then, unless `keep_going`, undoes the writes that went
/// through and says which table is left.
fn write_plan(
    handle: &mut Handle,
    ops: &[Op],
    current: &[VirtualServer],
    keep_going: bool,
    file: &str,
    io: &mut Out,
) -> i32 {
    let results = match handle.apply(ops) {
        Ok(results) => results,
        Err(e) => {
            let _ = writeln!(
                io.err,
                "ipvsadm-rs: --apply: {e}; the table may be partly changed: compare it with `ipvsadm-rs --diff {file}`"
            );
            return 1;
        }
    };
    let mut failed = 0;
    let mut lost = false;
    for (op, result) in ops.iter().zip(&results) {
        if let Err(e) = result {
            let _ = writeln!(io.err, "{}: {}", op_line(op), strerror::describe(e));
            failed += 1;
            lost |= matches!(e, ipvs_netlink::Error::ReplyLost { .. });
        }
    }
    if failed == 0 || keep_going {
        return i32::from(failed > 0);
    }
    let say = |io: &mut Out, what: &str| {
        let _ = writeln!(io.err, "ipvsadm-rs: --apply {file}: {what}");
    };
    let neither = format!(
        "the table is neither the old one nor the file's: compare it with `ipvsadm-rs --diff {file}`"
    );
    if lost {
        say(
            io,
            &format!(
                "the kernel's answers to some writes were lost, so nothing is undone; {neither}"
            ),
        );
        return 1;
    }
    let done: Vec<&Op> = ops
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|(op, _)| op)
        .collect();
    if done.is_empty() {
        say(io, "no write went through: the table is the old one");
        return 1;
    }
    let back = undo(&done, current);
    match handle.apply(&back) {
        Ok(r) if r.iter().all(Result::is_ok) => say(
            io,
            &format!(
                "{failed} of {} writes failed; the {} that went through were undone: the table is the old one (--keep-going keeps them)",
                ops.len(),
                done.len()
            ),
        ),
        Ok(r) => {
            for (op, result) in back.iter().zip(r) {
                if let Err(e) = result {
                    let _ = writeln!(io.err, "undoing: {}: {}", op_line(op), strerror::describe(&e));
                }
            }
            say(io, &format!("{failed} of {} writes failed, and undoing the others failed too: {neither}", ops.len()));
        }
        Err(e) => say(io, &format!("undoing the writes that went through: {e}; {neither}")),
    }
    1
}

/// The writes that put back what `done` (writes that went through, in
/// their order) changed in the table `current`: each one's inverse, in
/// reverse order. A deleted service comes back with its real servers (its
/// connections and counters do not).
pub fn undo(done: &[&Op], current: &[VirtualServer]) -> Vec<Op> {
    let find = |id: &ServiceId| current.iter().find(|v| v.service.id == *id);
    let dest = |id: &ServiceId, addr: SocketAddr| {
        find(id).and_then(|v| v.dests.iter().find(|d| d.socket_addr() == addr))
    };
    let mut back = Vec::new();
    for op in done.iter().rev() {
        match op {
            Op::AddService(s) => back.push(Op::DeleteService(s.id)),
            Op::EditService(s) => {
                back.extend(find(&s.id).map(|v| Op::EditService(v.service.clone())))
            }
            Op::DeleteService(id) => {
                if let Some(v) = find(id) {
                    back.push(Op::AddService(v.service.clone()));
                    back.extend(v.dests.iter().map(|d| Op::AddDestination(*id, d.clone())));
                }
            }
            Op::AddDestination(id, d) => back.push(Op::DeleteDestination(*id, d.socket_addr())),
            Op::EditDestination(id, d) => back
                .extend(dest(id, d.socket_addr()).map(|old| Op::EditDestination(*id, old.clone()))),
            Op::DeleteDestination(id, addr) => {
                back.extend(dest(id, *addr).map(|old| Op::AddDestination(*id, old.clone())))
            }
            _ => {}
        }
    }
    back
}

/// What `--diff` prints: each write's restore line (what `--apply
/// --dry-run` prints), after a `# was:` comment of what the kernel has
/// where the write edits or deletes something, so the old value is seen
/// beside the new one. Comments are skipped by `--apply` and by
/// `ipvsadm-restore`.
pub fn diff_text(ops: &[Op], current: &[VirtualServer]) -> String {
    let find = |id: &ServiceId| current.iter().find(|v| v.service.id == *id);
    let dest = |id: &ServiceId, addr: SocketAddr| {
        find(id).and_then(|v| v.dests.iter().find(|d| d.socket_addr() == addr))
    };
    let mut out = String::new();
    for op in ops {
        let was = match op {
            Op::EditService(s) => find(&s.id).map(|v| op_line(&Op::EditService(v.service.clone()))),
            Op::DeleteService(id) => find(id).map(|v| {
                let n = v.dests.len();
                let servers = if n == 1 { "server" } else { "servers" };
                format!(
                    "{} (with {n} real {servers})",
                    op_line(&Op::AddService(v.service.clone()))
                )
            }),
            Op::EditDestination(id, d) => {
                dest(id, d.socket_addr()).map(|old| op_line(&Op::EditDestination(*id, old.clone())))
            }
            Op::DeleteDestination(id, addr) => {
                dest(id, *addr).map(|old| op_line(&Op::AddDestination(*id, old.clone())))
            }
            _ => None,
        };
        if let Some(was) = was {
            out.push_str(&format!("# was: {was}\n"));
        }
        out.push_str(&op_line(op));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_save_prints() {
        let text = "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1\n\n# note\n-A -u 10.0.0.2:53 -s wlc\n";
        let t = read_table(&mut text.as_bytes(), input::DEFAULT_MAX_INPUT)
            .unwrap()
            .table;
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].dests.len(), 1);
        assert_eq!(t[1].service.scheduler, "wlc");
    }

    #[test]
    fn thresholds_a_line_does_not_give_stay_as_the_kernel_has_them() {
        use ipvs_netlink::{Destination, Service};
        let id = ServiceId::tcp("10.0.0.1:80".parse().unwrap());
        // The kernel's table after `-e ... -x 100 -y 10`.
        let current = vec![VirtualServer {
            service: Service::new(id, "rr"),
            dests: vec![
                Destination::new("10.1.0.1:80".parse().unwrap())
                    .weight(1)
                    .thresholds(100, 10),
                Destination::new("10.1.0.2:80".parse().unwrap())
                    .weight(1)
                    .thresholds(7, 3),
            ],
        }];
        let desired = |text: &str| {
            read_table(&mut text.as_bytes(), input::DEFAULT_MAX_INPUT)
                .unwrap()
                .against(&current)
        };
        // What `-Sn` prints of it (1.31 leaves thresholds out): no change.
        let saved = "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1\n-a -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 1\n";
        assert_eq!(
            plan(&desired(saved), &current, |_| true).unwrap().ops,
            vec![]
        );
        // Said, they count: `-x 0` clears, `-y 5` sets, the other stays.
        let said = "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1 -x 0\n-a -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 1 -y 5\n";
        let ops: Vec<String> = plan(&desired(said), &current, |_| true)
            .unwrap()
            .ops
            .iter()
            .map(op_line)
            .collect();
        assert_eq!(
            ops,
            [
                "-e -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1 -y 10",
                "-e -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 1 -x 7 -y 5",
            ]
        );
    }

    /// The plan from the table `old` to the file `new` (restore lines),
    /// and the table it was planned from.
    fn planned(old: &str, new: &str) -> (ipvs_plan::Plan, Vec<VirtualServer>) {
        let current = read_table(&mut old.as_bytes(), input::DEFAULT_MAX_INPUT)
            .unwrap()
            .table;
        let desired = read_table(&mut new.as_bytes(), input::DEFAULT_MAX_INPUT)
            .unwrap()
            .against(&current);
        (plan(&desired, &current, |_| true).unwrap(), current)
    }

    #[test]
    fn diff_shows_the_old_value_beside_the_new() {
        let old = "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1\n-a -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 1\n-A -u 10.0.0.2:53 -s rr\n-a -u 10.0.0.2:53 -r 10.1.0.3:53 -g -w 1\n";
        let new = "-A -t 10.0.0.1:80 -s wrr\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 5\n-A -t 10.0.0.3:80 -s rr\n";
        let (planned, current) = planned(old, new);
        assert_eq!(
            diff_text(&planned.ops, &current),
            "# was: -E -t 10.0.0.1:80 -s rr\n\
             -E -t 10.0.0.1:80 -s wrr\n\
             # was: -a -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 1\n\
             -d -t 10.0.0.1:80 -r 10.1.0.2:80\n\
             # was: -e -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1\n\
             -e -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 5\n\
             -A -t 10.0.0.3:80 -s rr\n\
             # was: -A -u 10.0.0.2:53 -s rr (with 1 real server)\n\
             -D -u 10.0.0.2:53\n"
        );
    }

    #[test]
    fn names_the_writes_whose_scheduler_is_missing() {
        use ipvs_netlink::scheduler::Availability;
        let old = "-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.2:80 -s rr\n";
        let new = "-A -t 10.0.0.1:80 -s nosuch\n-A -t 10.0.0.3:80 -s maybe\n-A -t 10.0.0.4:80 -s rr\n-A -t 10.0.0.5:80 -s rr\n";
        let (planned, _) = planned(old, new);
        let asked = std::cell::RefCell::new(Vec::new());
        let offered = |name: &str| {
            asked.borrow_mut().push(name.to_owned());
            match name {
                "rr" => Availability::Loaded,
                "maybe" => Availability::Unknown,
                _ => Availability::Missing,
            }
        };
        let missing: Vec<(String, String)> = missing_schedulers(&planned.ops, offered)
            .into_iter()
            .map(|(op, name)| (op_line(op), name))
            .collect();
        // The edit is named; the delete of 10.0.0.2, the add with rr and
        // the scheduler that cannot be told are not.
        assert_eq!(
            missing,
            [(
                "-E -t 10.0.0.1:80 -s nosuch".to_string(),
                "nosuch".to_string()
            )]
        );
        // Each name is looked up once, however many writes name it.
        let mut asked = asked.into_inner();
        asked.sort();
        assert_eq!(asked, ["maybe", "nosuch", "rr"]);
    }

    #[test]
    fn refuses_what_is_not_a_table() {
        let err =
            |text: &str| read_table(&mut text.as_bytes(), input::DEFAULT_MAX_INPUT).unwrap_err();
        assert_eq!(err("-C\n"), "line 1: only -A and -a lines describe a table");
        assert!(err("-a -t 10.0.0.1:80 -r 10.1.0.1 -m\n").contains("no -A line gives before"));
        assert!(err("-A -t 10.0.0.1:80\n-A -t 10.0.0.1:80\n").contains("given twice"));
        assert_eq!(
            err("-A -t 10.0.0.1:80 -s\n"),
            "line 1: -s: missing argument"
        );
    }

    /// A reader of endless bytes, as `/dev/zero` is.
    struct Endless(u8);

    impl std::io::Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            buf.fill(self.0);
            Ok(buf.len())
        }
    }

    #[test]
    fn endless_input_is_refused_at_the_bound() {
        let msg =
            "the table is longer than 100000 bytes (the bound is set by IPVSADM_RS_MAX_INPUT)";
        // One endless line, and endless short lines (each a comment).
        let mut zeros = BufReader::new(Endless(0));
        assert_eq!(read_table(&mut zeros, 100_000).unwrap_err(), msg);
        let mut lines = BufReader::new(Endless(b'\n'));
        assert_eq!(read_table(&mut lines, 100_000).unwrap_err(), msg);
        // Under a larger bound, an endless line is refused at its words,
        // with no more than them in memory.
        let mut zeros = BufReader::new(Endless(0));
        assert_eq!(
            read_table(&mut zeros, 1 << 30).unwrap_err(),
            format!(
                "line 1: more than {} words",
                super::super::restore::MAX_WORDS
            )
        );
        // A table of exactly the bound is read.
        let text = "-A -t 10.0.0.1:80 -s rr\n";
        let t = read_table(&mut text.as_bytes(), text.len() as u64).unwrap();
        assert_eq!(t.table.len(), 1);
    }

    #[test]
    fn each_write_is_undone_by_its_inverse_in_reverse_order() {
        use ipvs_netlink::{Destination, Service};
        let a = ServiceId::tcp("10.0.0.1:80".parse().unwrap());
        let b = ServiceId::tcp("10.0.0.2:80".parse().unwrap());
        let c = ServiceId::tcp("10.0.0.3:80".parse().unwrap());
        let old = Destination::new("10.1.0.1:80".parse().unwrap()).weight(1);
        let current = vec![
            VirtualServer {
                service: Service::new(a, "rr"),
                dests: vec![old.clone()],
            },
            VirtualServer {
                service: Service::new(b, "wlc"),
                dests: vec![old.clone()],
            },
        ];
        let new_dest = Destination::new("10.1.0.9:80".parse().unwrap()).weight(3);
        let ops = [
            Op::EditService(Service::new(a, "sh")),
            Op::EditDestination(a, old.clone().weight(5)),
            Op::DeleteService(b),
            Op::AddService(Service::new(c, "rr")),
            Op::AddDestination(c, new_dest.clone()),
            Op::DeleteDestination(a, old.socket_addr()),
        ];
        let done: Vec<&Op> = ops.iter().collect();
        assert_eq!(
            undo(&done, &current),
            [
                Op::AddDestination(a, old.clone()),
                Op::DeleteDestination(c, new_dest.socket_addr()),
                Op::DeleteService(c),
                Op::AddService(Service::new(b, "wlc")),
                Op::AddDestination(b, old.clone()),
                Op::EditDestination(a, old.clone()),
                Op::EditService(Service::new(a, "rr")),
            ]
        );
    }

    #[test]
    fn a_json_document_the_restore_reader_meets_is_said_to_be_one() {
        let e = read_table(&mut &b"{\"services\": []}\n"[..], 1000).unwrap_err();
        assert_eq!(e, JSON_AFTER_BLANKS);
    }

    /// The table restore lines give (parsed by the popt-exact parser of
    /// ipvsadm's command line), every threshold said.
    fn from_lines(text: &str) -> Vec<VirtualServer> {
        read_desired(&mut text.as_bytes(), input::DEFAULT_MAX_INPUT)
            .unwrap()
            .table
    }

    fn from_json(text: &str) -> Result<Desired, String> {
        read_desired(&mut text.as_bytes(), input::DEFAULT_MAX_INPUT)
    }

    /// The hand-written golden document of `-Ln --json` is the table of
    /// the restore lines that say the same, counters and the kernel's
    /// `hashed` aside.
    #[test]
    fn reads_the_json_document_of_a_listing() {
        let golden = include_str!("../../tests/golden/seed.json");
        let desired = from_json(golden).unwrap();
        assert!(desired.unsaid.is_empty());
        assert_eq!(
            desired.table,
            from_lines(
                "-A -t 10.97.97.97:80 -s rr\n-a -t 10.97.97.97:80 -r 10.244.1.39:80 -m -w 1 -x 0 -y 0\n"
            )
        );
        // Its compact form (`--json=compact`), after blank lines.
        let compact = format!("\n  \n{}", crate::format::json::compact(golden));
        assert_eq!(from_json(&compact).unwrap(), desired);
    }

    /// Every setting the schema carries, against the restore lines that
    /// say it; a real server without thresholds leaves them unsaid.
    #[test]
    fn reads_every_setting_of_the_json_schema() {
        let doc = r#"{
          "schema": "ipvsadm-rs/v1",
          "services": [
            {"family": "inet6", "protocol": null, "address": null, "port": null,
             "fwmark": 7, "scheduler": "sh", "flags": ["persistent", "hashed", "sh-fallback", "sh-port"],
             "timeout": 300, "netmask": "64", "persistence_engine": null, "stats": null,
             "some_later_member": {"ignored": true},
             "destinations": [
               {"family": "inet6", "address": "2001:db8::10", "port": 0, "forward": "tunnel",
                "weight": 3, "upper_threshold": 10, "lower_threshold": 5,
                "active_conns": 9, "inactive_conns": 9, "persistent_conns": 9,
                "tunnel": {"type": "gue", "port": 6080, "flags": ["csum"]}, "stats": null}
             ]},
            {"family": "inet", "protocol": "udp", "address": "10.0.0.2", "port": 5060,
             "fwmark": null, "scheduler": "wlc", "flags": ["persistent", "one-packet"],
             "timeout": 60, "netmask": "255.255.255.0", "persistence_engine": "sip",
             "destinations": [
               {"address": "10.1.0.1", "port": 5060, "forward": "route", "weight": 0},
               {"address": "10.1.0.2", "port": 5060, "forward": "masquerade", "weight": 65535,
                "upper_threshold": 4}
             ]},
            {"protocol": "sctp", "address": "2001:db8::1", "port": 9, "fwmark": null,
             "scheduler": "mh", "flags": ["mh-fallback"], "destinations": []}
          ]
        }"#;
        let desired = from_json(doc).unwrap();
        let lines = from_lines(
            "-A -f 7 -6 -s sh -b sh-fallback,sh-port -p 300 -M 64\n\
             -a -f 7 -6 -r [2001:db8::10]:0 -i --tun-type gue --tun-port 6080 --tun-csum -w 3 -x 10 -y 5\n\
             -A -u 10.0.0.2:5060 -s wlc -p 60 -M 255.255.255.0 -o --pe sip\n\
             -a -u 10.0.0.2:5060 -r 10.1.0.1:5060 -g -w 0\n\
             -a -u 10.0.0.2:5060 -r 10.1.0.2:5060 -m -w 65535 -x 4\n\
             -A --sctp-service [2001:db8::1]:9 -s mh -b mh-fallback\n",
        );
        assert_eq!(desired.table, lines);
        let a = ServiceId::Inet {
            protocol: ipvs_netlink::Protocol::Udp,
            addr: "10.0.0.2".parse().unwrap(),
            port: 5060,
        };
        let unsaid = |addr: &str| desired.unsaid.get(&(a, addr.parse().unwrap())).copied();
        assert_eq!(unsaid("10.1.0.1:5060"), Some((true, true)));
        assert_eq!(unsaid("10.1.0.2:5060"), Some((false, true)));
        assert_eq!(desired.unsaid.len(), 2);
    }

    #[test]
    fn refuses_json_that_is_not_a_table_it_can_write() {
        let err = |text: &str| from_json(text).unwrap_err();
        let svc = |members: &str| {
            format!(
                r#"{{"schema": "ipvsadm-rs/v2", "services": [{{"protocol": "tcp", "address": "10.0.0.1", "port": 80, "fwmark": null, "scheduler": "rr", {members} "destinations": []}}]}}"#
            )
        };
        let dest = |members: &str| {
            format!(
                r#"{{"schema": "ipvsadm-rs/v2", "services": [{{"protocol": "tcp", "address": "10.0.0.1", "port": 80, "scheduler": "rr", "destinations": [{{"address": "10.1.0.1", "port": 80, "forward": "masquerade", {members}}}]}}]}}"#
            )
        };
        let cases = [
            ("{\"schema\": \"ipvsadm-rs/v2\", \"services\": [", "not valid JSON: EOF while parsing a list at line 1 column 41"),
            ("{ garbage", "not valid JSON: key must be a string at line 1 column 3"),
            ("[1, 2]", "not a table document of `ipvsadm-rs -Ln --json`: not a JSON object"),
            ("{\"services\": []}", "no \"schema\": not a document of `ipvsadm-rs -Ln --json`"),
            ("{\"schema\": \"ipvsadm-rs/v9\", \"services\": []}", "schema \"ipvsadm-rs/v9\": this version reads ipvsadm-rs/v1 and ipvsadm-rs/v2"),
            ("{\"schema\": \"ipvsadm-rs/v2\", \"timeouts\": {\"tcp\": 900, \"tcp_fin\": 120, \"udp\": 300}}", "no \"services\": not a table document of `ipvsadm-rs -Ln --json`"),
            (&svc(r#""flags": ["sticky"],"#), "services[0]: TCP 10.0.0.1:80: flag \"sticky\" has no meaning"),
            (&svc(r#""netmask": "255.0.0.300","#), "services[0]: TCP 10.0.0.1:80: netmask \"255.0.0.300\" is not a dotted IPv4 mask"),
            (&svc(r#""persistence_engine": "a-name-of-16-bytes","#), "services[0]: TCP 10.0.0.1:80: persistence engine \"a-name-of-16-bytes\" is not a name of 1 to 15 bytes"),
            (&svc(r#""family": "inet6","#), "services[0]: address 10.0.0.1 is not of family inet6"),
            (&dest(r#""weight": 65536"#), "services[0]: TCP 10.0.0.1:80: real server 10.1.0.1:80: weight 65536 is over 65535"),
            (&dest(r#""weight": -1"#), "services[0]: TCP 10.0.0.1:80: invalid value: integer `-1`, expected u32"),
            (&dest(r#""weight": 1, "tunnel": {"type": "vxlan"}"#), "services[0]: TCP 10.0.0.1:80: real server 10.1.0.1:80: tunnel type \"vxlan\" is not ipip, gue, gre or a number"),
            (r#"{"schema": "ipvsadm-rs/v2", "services": [{"protocol": "tcp", "address": "10.0.0.1", "port": 80, "fwmark": 3, "scheduler": "rr"}]}"#, "services[0]: a service has either fwmark, or protocol, address and port (the others null)"),
            (r#"{"schema": "ipvsadm-rs/v2", "services": [{"fwmark": 3, "scheduler": "rr"}, {"fwmark": 3, "scheduler": "wlc"}]}"#, "services[1]: service FWM 3 given twice"),
            (r#"{"schema": "ipvsadm-rs/v2", "services": [{"fwmark": 3, "scheduler": "rr", "destinations": [{"address": "10.1.0.1", "port": 0, "forward": "route", "weight": 1}, {"address": "10.1.0.1", "port": 0, "forward": "route", "weight": 2}]}]}"#, "services[0]: real server 10.1.0.1:0 of FWM 3 given twice"),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter(|(text, want)| err(text) != *want)
            .map(|(text, want)| format!("{text}\n  got:  {}\n  want: {want}", err(text)))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        // Past the bound: refused having read one byte more.
        let long = format!(
            "{{\"schema\": \"ipvsadm-rs/v2\", \"services\": []}}{}",
            " ".repeat(100)
        );
        assert_eq!(
            read_desired(&mut long.as_bytes(), 50).unwrap_err(),
            "the table is longer than 50 bytes (the bound is set by IPVSADM_RS_MAX_INPUT)"
        );
        let mut zeros = BufReader::new(Endless(b'{'));
        assert_eq!(
            read_desired(&mut zeros, 100_000).unwrap_err(),
            "the table is longer than 100000 bytes (the bound is set by IPVSADM_RS_MAX_INPUT)"
        );
    }
}
