//! A resync's read of a known table ([`resync_table`]) against an
//! in-memory kernel: it reads every service, the real servers of its own
//! services in turns, at once those whose settings changed or that may be
//! written, never another tool's; a weight changed behind its back is
//! seen within [`RESYNC_TURNS`] resyncs.

use super::*;

/// [`Mem`], counting the real-server lists read.
struct Counting {
    mem: Mem,
    read: Vec<ServiceId>,
}

impl Kernel for Counting {
    fn table(&mut self) -> Result<Vec<VirtualServer>, ipvs_netlink::Error> {
        panic!("a resync with a known table never reads the whole table")
    }

    fn apply(&mut self, ops: &[Op]) -> Result<Vec<ipvs_netlink::Result<()>>, ipvs_netlink::Error> {
        self.mem.apply(ops)
    }

    fn services(&mut self) -> Result<Vec<Service>, ipvs_netlink::Error> {
        Ok(self.mem.table()?.into_iter().map(|v| v.service).collect())
    }

    fn destinations(&mut self, id: &ServiceId) -> Result<Vec<Destination>, ipvs_netlink::Error> {
        self.read.push(*id);
        Ok(self.mem.has(id).dests)
    }
}

fn table(n: usize) -> Vec<VirtualServer> {
    (0..n)
        .map(|i| {
            vs(
                &format!("10.96.{}.{}:80", i / 250, i % 250 + 1),
                &[&format!("10.244.{}.{}:8080", i / 250, i % 250 + 1)],
            )
        })
        .collect()
}

#[test]
fn a_resync_reads_its_own_real_servers_in_turns_and_sees_a_weight_changed_behind_its_back() {
    let ours = table(1000);
    let theirs = with_scheduler(vs("10.200.0.1:80", &["10.9.9.9:80"]), "wlc");
    let mut kernel = Counting {
        mem: Mem(ours.iter().cloned().chain([theirs.clone()]).collect()),
        read: Vec::new(),
    };
    let recorded: HashSet<ServiceId> = ours.iter().map(|v| v.service.id).collect();
    let known: Vec<VirtualServer> = kernel.mem.0.clone();
    // Another tool's hand: `ipvsadm -e -w 5` on one real server.
    let edited = ours[417].service.id;
    let rs = ours[417].dests[0].clone().weight(5);
    kernel.mem.one(&Op::EditDestination(edited, rs));
    let none = HashSet::new();
    let mut seen_at = None;
    let mut all = HashSet::new();
    for turn in 1..=RESYNC_TURNS as u64 {
        kernel.read.clear();
        let Resynced {
            table: got,
            read,
            drift,
        } = resync_table(&mut kernel, known.clone(), &recorded, &none, turn).unwrap();
        assert_eq!(read, kernel.read.len());
        // A tenth, give or take the hash's spread.
        assert!((50..=150).contains(&read), "turn {turn}: {read} read");
        assert!(!kernel.read.contains(&theirs.service.id));
        assert_eq!(got.len(), 1001);
        all.extend(kernel.read.iter().copied());
        let weight = got.iter().find(|v| v.service.id == edited).unwrap().dests[0].weight;
        if weight == 5 {
            seen_at.get_or_insert(turn);
            assert_eq!(drift, [edited].into(), "the edit is found changed");
        } else {
            assert_eq!(drift, HashSet::new(), "nothing else differs from known");
        }
    }
    assert!(seen_at.is_some(), "the edit was never read");
    assert_eq!(
        all, recorded,
        "every real server list is read within the turns"
    );
    // What may be written, and a service whose settings changed, are
    // read at once, at every turn.
    let must: HashSet<ServiceId> = [ours[3].service.id].into();
    kernel.mem.recreate(with_scheduler(ours[5].clone(), "sh"));
    let mut skipped = 0;
    for turn in 1..=RESYNC_TURNS as u64 {
        kernel.read.clear();
        let drift = resync_table(&mut kernel, known.clone(), &recorded, &none, turn)
            .unwrap()
            .drift;
        assert!(kernel.read.contains(&ours[5].service.id), "turn {turn}");
        assert!(drift.contains(&ours[5].service.id), "turn {turn}");
        skipped += usize::from(!kernel.read.contains(&ours[3].service.id));
        kernel.read.clear();
        resync_table(&mut kernel, known.clone(), &recorded, &must, turn).unwrap();
        assert!(kernel.read.contains(&ours[3].service.id), "turn {turn}");
    }
    assert_eq!(skipped, RESYNC_TURNS - 1, "its own turn aside");
}

#[test]
fn a_small_table_is_read_whole_at_each_resync() {
    let ours = table(RESYNC_ALL_BELOW - 1);
    let mut kernel = Counting {
        mem: Mem(ours.clone()),
        read: Vec::new(),
    };
    let recorded: HashSet<ServiceId> = ours.iter().map(|v| v.service.id).collect();
    let edited = ours[7].service.id;
    kernel.mem.one(&Op::EditDestination(
        edited,
        ours[7].dests[0].clone().weight(0),
    ));
    let Resynced {
        table: got,
        read,
        drift,
    } = resync_table(&mut kernel, ours.clone(), &recorded, &HashSet::new(), 1).unwrap();
    assert_eq!(read, ours.len());
    assert_eq!(drift, [edited].into());
    assert_eq!(
        got.iter().find(|v| v.service.id == edited).unwrap().dests[0].weight,
        0
    );
}

/// Above [`RESYNC_TURNS`] x [`RESYNC_READ_MAX`] owned services, each turn
/// reads about [`RESYNC_READ_MAX`] real-server lists, and every one is
/// read within the turns.
#[test]
fn a_large_table_is_read_in_more_turns_of_a_bounded_size() {
    assert_eq!(resync_turns(RESYNC_ALL_BELOW - 1), 1);
    assert_eq!(resync_turns(RESYNC_ALL_BELOW), RESYNC_TURNS);
    assert_eq!(resync_turns(RESYNC_TURNS * RESYNC_READ_MAX), RESYNC_TURNS);
    assert_eq!(resync_turns(10_000), 20);
    let ours = table(7_500);
    let turns = resync_turns(ours.len());
    assert_eq!(turns, 15);
    let mut kernel = Counting {
        mem: Mem(ours.clone()),
        read: Vec::new(),
    };
    let recorded: HashSet<ServiceId> = ours.iter().map(|v| v.service.id).collect();
    let mut all = HashSet::new();
    for turn in 1..=turns as u64 {
        kernel.read.clear();
        let read = resync_table(&mut kernel, ours.clone(), &recorded, &HashSet::new(), turn)
            .unwrap()
            .read;
        // About RESYNC_READ_MAX, give or take the hash's spread.
        assert!((350..=650).contains(&read), "turn {turn}: {read} read");
        all.extend(kernel.read.iter().copied());
    }
    assert_eq!(all, recorded, "every real server list within the turns");
}
