//! What became of writes whose replies were lost.
//!
//! When the kernel's acknowledgements of a pipelined batch are lost (the
//! socket's receive buffer overflowed, or the batch broke off), a caller
//! still needs to know, write by write, whether the table changed. [`fates`]
//! tells it from the replies that did come back and, for the others, from
//! the table read back.

use std::net::SocketAddr;

use ipvs_netlink::{Destination, Handle, Op, Service, ServiceId};

use crate::{DestinationSpec, ServiceSpec};

/// What [`fates`] reads of the kernel's table. A [`Handle`] is the real
/// one; tests put a table in memory behind it.
pub trait ReadTable {
    /// The service with this identity, if the table has it.
    fn service(&mut self, id: &ServiceId) -> ipvs_netlink::Result<Option<Service>>;
    /// The real servers of a service (`ESRCH` when it is gone).
    fn destinations(&mut self, id: &ServiceId) -> ipvs_netlink::Result<Vec<Destination>>;
}

impl ReadTable for Handle {
    fn service(&mut self, id: &ServiceId) -> ipvs_netlink::Result<Option<Service>> {
        Handle::service(self, id)
    }

    fn destinations(&mut self, id: &ServiceId) -> ipvs_netlink::Result<Vec<Destination>> {
        Handle::destinations(self, id)
    }
}

/// Why a write got its [`Fate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Its own reply came back.
    Replied,
    /// The kernel refused it; the text is the error in the words of the
    /// `describe` given to [`fates`].
    Refused(String),
    /// Its reply was lost and the table holds what it asked for.
    TableHolds,
    /// Its reply was lost and the table does not hold what it asked for.
    NotInTable,
    /// Its reply was lost and a later write in flight changed the same
    /// service or real server.
    ChangedLater,
    /// Its reply was lost and the table could not be read.
    Unreadable,
    /// Its reply was lost and it is not a service or real server write
    /// (flush, zero, timeouts, daemons): the table cannot tell.
    NotAnEntry,
}

impl Reason {
    /// The words `ipvsadm-rs -R` prints after the fate (empty for
    /// [`Reason::Replied`]).
    pub fn text(&self) -> String {
        match self {
            Reason::Replied => String::new(),
            Reason::Refused(why) => format!(": {why}"),
            Reason::TableHolds => " (reply lost; the table holds it)".to_owned(),
            Reason::NotInTable => " (reply lost; not in the table)".to_owned(),
            Reason::ChangedLater => " (reply lost; a later line changed the same entry)".to_owned(),
            Reason::Unreadable => " (reply lost; the table cannot be read)".to_owned(),
            Reason::NotAnEntry => " (reply lost; not a service or real server)".to_owned(),
        }
    }
}

/// What became of one write that was in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// The kernel acknowledged it, or the table holds what it asked for.
    Applied(Reason),
    /// The kernel refused it, or the table does not hold what it asked
    /// for (and no later write could have changed that).
    NotApplied(Reason),
    /// Cannot be told.
    Unknown(Reason),
}

/// What an op changes, for telling whether a later op in flight may have
/// changed it again.
#[derive(PartialEq)]
enum Target<'a> {
    Service(&'a ServiceId),
    Dest(&'a ServiceId, SocketAddr),
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

/// After lost replies: for each write of `ops` that was in flight, in
/// order, whether it was applied. A write whose result came back
/// (`known`) has that result: an error reply means not applied; no error
/// reply before the last answered request means applied. For a write
/// whose reply was lost, the table is read back: applied when it holds
/// what the write asked for (the settings of an added or edited service
/// or real server, the absence of a deleted one), not applied when it
/// does not. Unknown when a later write in flight that may have been
/// applied changes the same service or real server, when the table
/// cannot be read, and for flush, zero, timeout and daemon writes.
///
/// "Not applied" is certain. "Applied" from the table means the table
/// holds what the write asks for: a write that asked for what was already
/// there (say, deleting a real server that never existed) reads as
/// applied.
///
/// A refusal's words are `describe`'s: `|e| e.to_string()` for IPVS's
/// words, or ipvsadm's (`ipvsadm_compat::messages::describe`).
pub fn fates(
    table: &mut impl ReadTable,
    ops: &[Op],
    known: Option<&[ipvs_netlink::Result<()>]>,
    describe: impl Fn(&ipvs_netlink::Error) -> String,
) -> Vec<Fate> {
    // From the last write back: a later write blocks the table's answer
    // for an earlier one unless it certainly changed nothing.
    let mut found: Vec<Fate> = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate().rev() {
        let fate = match known.and_then(|k| k.get(i)) {
            Some(Ok(())) => Fate::Applied(Reason::Replied),
            Some(Err(ipvs_netlink::Error::ReplyLost { .. })) | None => {
                let here = target(op);
                let blocked = ops[i + 1..]
                    .iter()
                    .zip(found.iter().rev())
                    .any(|(later, fate)| {
                        !matches!(fate, Fate::NotApplied(_)) && overlaps(&here, &target(later))
                    });
                if blocked {
                    Fate::Unknown(Reason::ChangedLater)
                } else {
                    table_fate(table, op)
                }
            }
            Some(Err(e)) => Fate::NotApplied(Reason::Refused(describe(e))),
        };
        found.push(fate);
    }
    found.reverse();
    found
}

/// Whether the kernel's table holds what `op` asked for.
fn table_fate(table: &mut impl ReadTable, op: &Op) -> Fate {
    let yes_no = |held: bool| {
        if held {
            Fate::Applied(Reason::TableHolds)
        } else {
            Fate::NotApplied(Reason::NotInTable)
        }
    };
    let unknown = Fate::Unknown(Reason::Unreadable);
    match op {
        Op::AddService(s) | Op::EditService(s) => match table.service(&s.id) {
            Ok(now) => {
                yes_no(now.is_some_and(|now| ServiceSpec::from(&now) == ServiceSpec::from(s)))
            }
            Err(_) => unknown,
        },
        Op::DeleteService(id) => match table.service(id) {
            Ok(now) => yes_no(now.is_none()),
            Err(_) => unknown,
        },
        Op::AddDestination(id, d) | Op::EditDestination(id, d) => match table.destinations(id) {
            Ok(list) => yes_no(
                list.iter()
                    .any(|x| DestinationSpec::from(x) == DestinationSpec::from(d)),
            ),
            // ESRCH: the service is gone, and its real servers with it.
            Err(e) if e.errno() == Some(libc::ESRCH) => yes_no(false),
            Err(_) => unknown,
        },
        Op::DeleteDestination(id, addr) => match table.destinations(id) {
            Ok(list) => yes_no(list.iter().all(|x| x.socket_addr() != *addr)),
            Err(e) if e.errno() == Some(libc::ESRCH) => yes_no(true),
            Err(_) => unknown,
        },
        _ => Fate::Unknown(Reason::NotAnEntry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipvs_netlink::{Error, Operation};
    use std::collections::HashMap;

    /// The error's own words.
    fn words(e: &Error) -> String {
        e.to_string()
    }

    /// A table in memory; `None` answers every read with an error.
    struct Mem(Option<HashMap<ServiceId, (Service, Vec<Destination>)>>);

    impl ReadTable for Mem {
        fn service(&mut self, id: &ServiceId) -> ipvs_netlink::Result<Option<Service>> {
            let t = self.0.as_ref().ok_or(Error::Kernel {
                op: Operation::GetService,
                errno: libc::EIO,
            })?;
            Ok(t.get(id).map(|(s, _)| s.clone()))
        }

        fn destinations(&mut self, id: &ServiceId) -> ipvs_netlink::Result<Vec<Destination>> {
            let t = self.0.as_ref().ok_or(Error::Kernel {
                op: Operation::ListDestinations,
                errno: libc::EIO,
            })?;
            t.get(id).map(|(_, d)| d.clone()).ok_or(Error::Kernel {
                op: Operation::ListDestinations,
                errno: libc::ESRCH,
            })
        }
    }

    fn id(vip: &str) -> ServiceId {
        ServiceId::tcp(vip.parse().unwrap())
    }

    fn lost() -> ipvs_netlink::Result<()> {
        Err(Error::ReplyLost {
            op: Operation::AddService,
        })
    }

    #[test]
    fn lost_replies_are_read_back_from_the_table() {
        let a = id("10.0.0.1:80");
        let b = id("10.0.0.2:80");
        let held = Service::new(a, "rr");
        let rs = Destination::new("10.1.0.1:80".parse().unwrap());
        let mut table = HashMap::new();
        table.insert(a, (held.clone(), vec![rs.clone()]));
        let ops = [
            Op::AddService(held.clone()),
            Op::AddService(Service::new(b, "wlc")),
            Op::AddDestination(a, rs.clone()),
            Op::DeleteDestination(a, "10.1.0.9:80".parse().unwrap()),
            Op::AddDestination(b, rs),
            Op::Flush,
        ];
        let known = [Ok(()), lost(), lost(), lost(), lost(), lost()];
        let got = fates(
            &mut Mem(Some(table.clone())),
            &ops[..5],
            Some(&known[..5]),
            words,
        );
        assert_eq!(
            got,
            [
                Fate::Applied(Reason::Replied),
                Fate::NotApplied(Reason::NotInTable),
                Fate::Applied(Reason::TableHolds),
                // A real server that is not there: its deletion reads as applied.
                Fate::Applied(Reason::TableHolds),
                // ESRCH: b is gone, and its real servers with it.
                Fate::NotApplied(Reason::NotInTable),
            ]
        );
        // A flush after them blocks every answer the table could give.
        let got = fates(&mut Mem(Some(table)), &ops, Some(&known), words);
        assert_eq!(got[0], Fate::Applied(Reason::Replied));
        for fate in &got[1..5] {
            assert_eq!(*fate, Fate::Unknown(Reason::ChangedLater));
        }
        assert_eq!(got[5], Fate::Unknown(Reason::NotAnEntry));
    }

    #[test]
    fn a_refused_later_write_does_not_block_an_earlier_answer() {
        let a = id("10.0.0.1:80");
        let s = Service::new(a, "rr");
        let mut table = HashMap::new();
        table.insert(a, (s.clone(), Vec::new()));
        let ops = [Op::AddService(s.clone()), Op::EditService(s)];
        let refused = Err(Error::Kernel {
            op: Operation::EditService,
            errno: libc::ESRCH,
        });
        let got = fates(&mut Mem(Some(table)), &ops, Some(&[lost(), refused]), words);
        assert_eq!(
            got,
            [
                Fate::Applied(Reason::TableHolds),
                Fate::NotApplied(Reason::Refused(
                    "edit service: no such service (ESRCH)".to_owned()
                )),
            ]
        );
    }

    #[test]
    fn without_replies_or_table_nothing_is_claimed() {
        let a = id("10.0.0.1:80");
        let ops = [Op::AddService(Service::new(a, "rr")), Op::Zero(None)];
        let got = fates(&mut Mem(None), &ops, None, words);
        assert_eq!(
            got,
            [
                Fate::Unknown(Reason::Unreadable),
                Fate::Unknown(Reason::NotAnEntry)
            ]
        );
        assert_eq!(
            got[0].clone(),
            Fate::Unknown(Reason::Unreadable),
            "{}",
            Reason::Unreadable.text()
        );
    }
}
