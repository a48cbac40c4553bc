//! The pacing of the live loop, as a pure state machine: when the next
//! sync is due, and whether it is a full resync.
//!
//! [`Pacing`] takes the loop's events (an object changed, a watch's list
//! is complete, a sync starts, a sync ended well or badly) with the
//! instant each happened, and answers with the instant the next sync is
//! due. It never sleeps and never reads the clock: the loop sleeps until
//! [`Pacing::due`], and tests drive it with made-up instants, as
//! kube-runtime keeps its `scheduler` apart from its controller.
//!
//! The rules:
//! - no sync before both initial lists are complete (an empty store is
//!   never taken for an empty cluster);
//! - a change that comes while the node is idle (no sync running, no
//!   change pending) makes a sync due at once, or [`Periods::quiet`]
//!   after the last sync ended if that is later, so that a lone event
//!   reaches the kernel without waiting for more (the leading edge), and
//!   syncs never follow each other closer than `quiet` (as kube-proxy's
//!   runner with its minimum sync period);
//! - any other change (one while a sync runs; a list completing counts
//!   as one) makes a sync due [`Periods::quiet`] after the last event of
//!   its burst, at most [`Periods::max_delay`] after the first, so that a
//!   burst gives one sync;
//! - after every sync a full resync is due [`Periods::resync`] later, or
//!   [`Periods::drain_recheck`] later (at most `resync`) when it left real
//!   servers draining;
//! - a sync that failed is retried after the [`Backoff`]'s delay.
//!
//! [`Backoff`] on a [`Schedule`] is also what the watches back off with
//! (exponential, capped, jittered, reset after a stretch of health).

use std::time::{Duration, Instant};

/// One of the two watches the first sync waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The Services.
    Services,
    /// The EndpointSlices.
    Slices,
}

impl Source {
    /// The kind's name, for the log.
    pub fn name(self) -> &'static str {
        match self {
            Source::Services => "Services",
            Source::Slices => "EndpointSlices",
        }
    }
}

/// The periods of the pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    /// The period of full resyncs.
    pub resync: Duration,
    /// How long after the last event of a burst its sync waits for more.
    pub quiet: Duration,
    /// How long after the first event of a burst its sync runs at the
    /// latest.
    pub max_delay: Duration,
    /// How soon after a sync that left real servers draining the next one
    /// runs (at most `resync`).
    pub drain_recheck: Duration,
}

/// A backoff schedule, as client-go's reflector and kube-runtime's
/// watcher keep theirs: exponential from `first`, doubling to `cap`, with
/// jitter, starting over only after a stretch of health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// The delay after the first failure.
    pub first: Duration,
    /// The longest delay.
    pub cap: Duration,
    /// How much of each delay jitter may take off, in percent: a delay
    /// `d` becomes one drawn evenly from `d × (1 − jitter/100)` to `d`,
    /// so that nodes that failed together do not retry together, and no
    /// delay is ever longer than the schedule's.
    pub jitter_percent: u8,
    /// How long a success must last, without a failure, for the delays to
    /// start over from `first`.
    pub reset_after: Duration,
}

impl Default for Schedule {
    /// 800 ms, 1.6 s, 3.2 s, ... 25.6 s, then 30 s (client-go's
    /// reflector's numbers), each shortened by up to half by jitter; back
    /// to 800 ms after 2 minutes of health. Through an outage: at most 9
    /// attempts in its first minute (the first and 8 retries), then 2 to
    /// 4 a minute.
    fn default() -> Self {
        Schedule {
            first: Duration::from_millis(800),
            cap: Duration::from_secs(30),
            jitter_percent: 50,
            reset_after: Duration::from_secs(120),
        }
    }
}

impl Schedule {
    /// The delay after `failures` failures in a row (1 for the first),
    /// before jitter.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.cap)
    }
}

/// The source of the jitter: a seeded SplitMix64, so that tests can
/// replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jitter(u64);

impl Jitter {
    /// A sequence from `seed` (the same seed, the same sequence).
    pub fn seeded(seed: u64) -> Self {
        Jitter(seed)
    }

    /// A sequence from a seed that differs per process and per call
    /// (std's random hash keys), so that nodes do not jitter alike.
    pub fn random() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0);
        Jitter(h.finish())
    }

    /// The next number, evenly in `[0, 1)`.
    fn fraction(&mut self) -> f64 {
        // SplitMix64 (Steele, Lea, Flood 2014).
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // The top 53 bits, a double's mantissa.
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The retry delays of something that fails (a sync, a watch): the
/// [`Schedule`], one failure after the other.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    schedule: Schedule,
    /// Failures since the delays last started over.
    failures: u32,
    /// Since when it has succeeded without a failure.
    healthy_since: Option<Instant>,
    jitter: Jitter,
}

impl Backoff {
    /// Delays on `schedule`, jittered from `jitter`.
    pub fn new(schedule: Schedule, jitter: Jitter) -> Self {
        Backoff {
            schedule,
            failures: 0,
            healthy_since: None,
            jitter,
        }
    }

    /// A failure at `now`: the delay before the next attempt.
    pub fn failed(&mut self, now: Instant) -> Duration {
        if self
            .healthy_since
            .is_some_and(|since| now.saturating_duration_since(since) >= self.schedule.reset_after)
        {
            self.failures = 0;
        }
        self.healthy_since = None;
        self.failures = self.failures.saturating_add(1);
        let ceiling = self.schedule.ceiling(self.failures);
        let off = f64::from(self.schedule.jitter_percent.min(100)) / 100.0 * self.jitter.fraction();
        ceiling.mul_f64(1.0 - off)
    }

    /// A failure at `now` whose server asked for `retry_after` (a 429's
    /// Retry-After): the longer of that and the schedule's delay.
    pub fn failed_asking(&mut self, now: Instant, retry_after: Duration) -> Duration {
        self.failed(now).max(retry_after)
    }

    /// A success at `now` (the delays start over once it has lasted
    /// [`Schedule::reset_after`]).
    pub fn succeeded(&mut self, now: Instant) {
        self.healthy_since.get_or_insert(now);
    }
}

/// The pacing state of the live loop.
#[derive(Debug, Clone)]
pub struct Pacing {
    periods: Periods,
    /// Whether each watch's initial list is complete.
    listed: (bool, bool),
    /// A pending change: when its burst started and when it last grew.
    burst: Option<(Instant, Instant)>,
    /// Whether the pending burst began while idle (due at once, or
    /// `quiet` after the last sync ended).
    leading: bool,
    /// When the node last became idle: the end of the last sync (`None`
    /// before the first and while one runs).
    idle_since: Option<Instant>,
    /// When the next full resync is due (none before the first sync).
    resync_at: Option<Instant>,
    /// When a failed sync is retried.
    retry_at: Option<Instant>,
    backoff: Backoff,
}

impl Pacing {
    /// Nothing listed, nothing pending.
    pub fn new(periods: Periods, backoff: Backoff) -> Self {
        Pacing {
            periods,
            listed: (false, false),
            burst: None,
            leading: false,
            idle_since: None,
            resync_at: None,
            retry_at: None,
            backoff,
        }
    }

    /// An object changed at `now`.
    pub fn changed(&mut self, now: Instant) {
        match self.burst {
            Some((first, _)) => self.burst = Some((first, now)),
            None => {
                self.leading = self.idle_since.is_some();
                self.burst = Some((now, now));
            }
        }
    }

    /// The (re)list of `source` was complete at `now`: the store holds
    /// it. Counts as a change.
    pub fn listed(&mut self, source: Source, now: Instant) {
        match source {
            Source::Services => self.listed.0 = true,
            Source::Slices => self.listed.1 = true,
        }
        self.changed(now);
    }

    /// Whether both initial lists are complete.
    pub fn ready(&self) -> bool {
        self.listed.0 && self.listed.1
    }

    /// When the next sync is due: `None` before both initial lists are
    /// complete, or when nothing is (the first sync waits for a change).
    pub fn due(&self) -> Option<Instant> {
        if !self.ready() {
            return None;
        }
        let change = self.burst.map(|(first, last)| {
            if self.leading {
                match self.idle_since {
                    Some(idle) => first.max(idle + self.periods.quiet),
                    None => first,
                }
            } else {
                (last + self.periods.quiet).min(first + self.periods.max_delay)
            }
        });
        [change, self.resync_at, self.retry_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// A sync starts at `now`: whether it is a full resync (no change
    /// pending and no retry due), which reads the whole table.
    pub fn start(&mut self, now: Instant) -> bool {
        let resync = self.burst.is_none() && self.retry_at.is_none_or(|at| at > now);
        self.burst = None;
        self.leading = false;
        self.idle_since = None;
        self.retry_at = None;
        resync
    }

    /// The sync ended at `now`, `ok` or not, leaving real servers
    /// `draining` or not. Returns the retry delay when it failed.
    pub fn finished(&mut self, now: Instant, ok: bool, draining: bool) -> Option<Duration> {
        self.idle_since = Some(now);
        let p = &self.periods;
        self.resync_at = Some(if draining {
            now + p.drain_recheck.min(p.resync)
        } else {
            now + p.resync
        });
        if ok {
            self.backoff.succeeded(now);
            None
        } else {
            let delay = self.backoff.failed(now);
            self.retry_at = Some(now + delay);
            Some(delay)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn periods() -> Periods {
        Periods {
            resync: 30_000 * MS,
            quiet: 100 * MS,
            max_delay: 1_000 * MS,
            drain_recheck: 5_000 * MS,
        }
    }

    /// Delays of 1, 2, 4, ... s, at most 30 s, without jitter.
    fn exact(cap: Duration) -> Backoff {
        let schedule = Schedule {
            first: 1_000 * MS,
            cap,
            jitter_percent: 0,
            reset_after: 120_000 * MS,
        };
        Backoff::new(schedule, Jitter::seeded(1))
    }

    fn pacing() -> Pacing {
        Pacing::new(periods(), exact(30_000 * MS))
    }

    /// A pacing whose first sync ran and went well at `t0`.
    fn synced(t0: Instant) -> Pacing {
        let mut p = pacing();
        p.listed(Source::Services, t0);
        p.listed(Source::Slices, t0);
        assert!(!p.start(t0));
        assert_eq!(p.finished(t0, true, false), None);
        p
    }

    #[test]
    fn nothing_is_due_before_both_lists_are_complete() {
        let t0 = Instant::now();
        let mut p = pacing();
        assert_eq!(p.due(), None);
        // Changes before the lists wait for them.
        p.changed(t0);
        assert_eq!(p.due(), None);
        p.listed(Source::Slices, t0 + 10 * MS);
        assert_eq!(p.due(), None);
        assert!(!p.ready());
        p.listed(Source::Services, t0 + 20 * MS);
        assert!(p.ready());
        // The burst began with the first change: quiet after the last.
        assert_eq!(p.due(), Some(t0 + 120 * MS));
        // The first sync is no resync.
        assert!(!p.start(t0 + 120 * MS));
    }

    #[test]
    fn a_burst_waits_for_quiet_but_not_beyond_the_max_delay() {
        let t0 = Instant::now();
        let mut p = synced(t0);
        // Within `quiet` of the last sync's end: `quiet` after that end.
        let t1 = t0 + 50 * MS;
        p.changed(t1);
        assert_eq!(p.due(), Some(t0 + 100 * MS));
        p.changed(t1 + 10 * MS);
        assert_eq!(p.due(), Some(t0 + 100 * MS), "events join it");
        assert!(!p.start(t0 + 100 * MS));
        // Events while a sync runs are a burst: each event inside the
        // quiet period pushes its sync back...
        let t1 = t0 + 120 * MS;
        p.changed(t1);
        assert_eq!(p.due(), Some(t1 + 100 * MS));
        for i in 1..=8u32 {
            p.changed(t1 + i * 90 * MS);
            assert_eq!(p.due(), Some(t1 + (i * 90 + 100) * MS), "event {i}");
        }
        // ... up to the max delay after the first event.
        p.changed(t1 + 950 * MS);
        assert_eq!(p.due(), Some(t1 + 1_000 * MS));
        assert!(!p.start(t1 + 1_000 * MS), "a change is no resync");
        // The burst is done: the next one starts anew, `quiet` after the
        // sync's end.
        assert_eq!(p.finished(t1 + 1_010 * MS, true, false), None);
        p.changed(t1 + 1_050 * MS);
        assert_eq!(p.due(), Some(t1 + 1_110 * MS));
    }

    #[test]
    fn a_change_after_a_quiet_stretch_is_due_at_once_and_a_storm_still_coalesces() {
        let t0 = Instant::now();
        let mut p = synced(t0);
        // 5 s idle: the lone event is due when it happens.
        let t1 = t0 + 5_000 * MS;
        p.changed(t1);
        assert_eq!(p.due(), Some(t1));
        // Events before the sync starts join it.
        p.changed(t1 + MS);
        assert_eq!(p.due(), Some(t1));
        assert!(!p.start(t1 + MS));
        // Events while it runs wait for quiet after it, as a burst does.
        p.changed(t1 + 20 * MS);
        assert_eq!(p.due(), Some(t1 + 120 * MS));
        p.finished(t1 + 40 * MS, true, false);
        p.changed(t1 + 60 * MS);
        assert_eq!(p.due(), Some(t1 + 160 * MS));
        assert!(!p.start(t1 + 160 * MS));
        p.finished(t1 + 170 * MS, true, false);
        // A change soon after that sync: `quiet` after its end, not at once.
        p.changed(t1 + 200 * MS);
        assert_eq!(p.due(), Some(t1 + 270 * MS));
        assert!(!p.start(t1 + 270 * MS));
        p.finished(t1 + 310 * MS, true, false);
        // Idle for `quiet` after that one: at once again.
        p.changed(t1 + 410 * MS);
        assert_eq!(p.due(), Some(t1 + 410 * MS));
    }

    #[test]
    fn a_full_resync_is_due_a_period_after_each_sync() {
        let t0 = Instant::now();
        let mut p = synced(t0);
        assert_eq!(p.due(), Some(t0 + 30_000 * MS));
        let t1 = t0 + 30_000 * MS;
        assert!(p.start(t1), "nothing changed: a resync");
        // The period counts from the end of the sync.
        assert_eq!(p.finished(t1 + 7 * MS, true, false), None);
        assert_eq!(p.due(), Some(t1 + 30_007 * MS));
        // A change in between comes first (at once, after a quiet
        // stretch), and pushes the resync back.
        p.changed(t1 + 1_000 * MS);
        assert_eq!(p.due(), Some(t1 + 1_000 * MS));
        assert!(!p.start(t1 + 1_100 * MS));
        p.finished(t1 + 1_100 * MS, true, false);
        assert_eq!(p.due(), Some(t1 + 31_100 * MS));
    }

    #[test]
    fn draining_real_servers_bring_the_next_sync_closer() {
        let t0 = Instant::now();
        let mut p = synced(t0);
        p.changed(t0 + 1_000 * MS);
        p.start(t0 + 1_100 * MS);
        p.finished(t0 + 1_100 * MS, true, true);
        assert_eq!(p.due(), Some(t0 + 6_100 * MS));
        assert!(p.start(t0 + 6_100 * MS), "a recheck reads the table");
        // Never later than a resync.
        let mut p = Pacing::new(
            Periods {
                resync: 2_000 * MS,
                ..periods()
            },
            exact(2_000 * MS),
        );
        p.listed(Source::Services, t0);
        p.listed(Source::Slices, t0);
        p.start(t0);
        p.finished(t0, true, true);
        assert_eq!(p.due(), Some(t0 + 2_000 * MS));
    }

    #[test]
    fn a_failed_sync_is_retried_with_a_doubling_delay_reset_by_lasting_success() {
        let t0 = Instant::now();
        let mut p = synced(t0);
        let mut now = t0 + 1_000 * MS;
        p.changed(now);
        now += 100 * MS;
        p.start(now);
        let mut delays = Vec::new();
        for _ in 0..7 {
            let delay = p.finished(now, false, false).expect("a retry");
            assert_eq!(p.due(), Some(now + delay));
            delays.push(delay.as_millis());
            now += delay;
            assert!(!p.start(now), "a retry is no resync");
        }
        assert_eq!(delays, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
        // A success, then a failure a minute later: no reset yet.
        assert_eq!(p.finished(now, true, false), None);
        assert_eq!(p.due(), Some(now + 30_000 * MS));
        let later = now + 60_000 * MS;
        p.start(later);
        assert_eq!(p.finished(later, false, false), Some(30_000 * MS));
        // Two minutes of success: the next failure starts over.
        p.start(later + 30_000 * MS);
        p.finished(later + 30_000 * MS, true, false);
        p.start(later + 60_000 * MS);
        p.finished(later + 60_000 * MS, true, false);
        let t = later + 150_000 * MS;
        p.changed(t);
        p.start(t + 100 * MS);
        assert_eq!(p.finished(t + 100 * MS, false, false), Some(1_000 * MS));
    }

    #[test]
    fn a_resync_and_a_retry_due_together_are_a_retry() {
        let t0 = Instant::now();
        let mut p = synced(t0);
        p.changed(t0 + 29_000 * MS);
        p.start(t0 + 29_100 * MS);
        // Failed at 29.9 s: the retry at 30.9 s; the resync at 59.9 s.
        assert_eq!(p.finished(t0 + 29_900 * MS, false, false), Some(1_000 * MS));
        assert_eq!(p.due(), Some(t0 + 30_900 * MS));
        // The loop woke late: the retry is due, so no resync.
        assert!(!p.start(t0 + 60_000 * MS));
        // A recheck of draining servers due before a pending retry is a
        // resync, which reads the whole table, and the retry is dropped.
        let mut p = synced(t0);
        let mut now = t0 + 1_000 * MS;
        for delay in [1_000, 2_000, 4_000] {
            p.changed(now);
            p.start(now);
            assert_eq!(p.finished(now, false, false), Some(delay * MS));
            now += 100 * MS;
        }
        p.changed(now);
        p.start(now);
        assert_eq!(p.finished(now, false, true), Some(8_000 * MS));
        assert_eq!(p.due(), Some(now + 5_000 * MS));
        assert!(p.start(now + 5_000 * MS));
        p.finished(now + 5_000 * MS, true, false);
        assert_eq!(p.due(), Some(now + 35_000 * MS));
    }

    #[test]
    fn the_schedule_doubles_from_first_to_its_cap() {
        let s = Schedule::default();
        let ceilings: Vec<u128> = (1..=9).map(|n| s.ceiling(n).as_millis()).collect();
        assert_eq!(
            ceilings,
            [800, 1_600, 3_200, 6_400, 12_800, 25_600, 30_000, 30_000, 30_000]
        );
        // No overflow however long it fails.
        assert_eq!(s.ceiling(u32::MAX), s.cap);
        assert_eq!(s.ceiling(0), s.first);
    }

    #[test]
    fn jitter_takes_off_up_to_its_share_and_never_adds() {
        let t0 = Instant::now();
        let s = Schedule::default();
        let mut lowest = [Duration::MAX; 9];
        let mut highest = [Duration::ZERO; 9];
        for seed in 0..500 {
            let mut b = Backoff::new(s, Jitter::seeded(seed));
            for n in 1..=9u32 {
                let d = b.failed(t0 + n * 1_000 * MS);
                let ceiling = s.ceiling(n);
                assert!(d <= ceiling, "seed {seed}, failure {n}: {d:?}");
                assert!(d >= ceiling / 2, "seed {seed}, failure {n}: {d:?}");
                let i = n as usize - 1;
                lowest[i] = lowest[i].min(d);
                highest[i] = highest[i].max(d);
            }
        }
        // Over 500 nodes the delays spread over the whole range.
        for n in 1..=9u32 {
            let (i, ceiling) = (n as usize - 1, s.ceiling(n));
            assert!(lowest[i] < ceiling.mul_f64(0.52), "failure {n}: {lowest:?}");
            assert!(
                highest[i] > ceiling.mul_f64(0.98),
                "failure {n}: {highest:?}"
            );
        }
        // The first delay is under a second; none is over the cap.
        assert!(highest[0] < 1_000 * MS && highest[8] <= 30_000 * MS);
    }

    #[test]
    fn a_seed_replays_its_delays_and_seeds_differ() {
        let t0 = Instant::now();
        let delays = |seed| {
            let mut b = Backoff::new(Schedule::default(), Jitter::seeded(seed));
            (0..6).map(|_| b.failed(t0)).collect::<Vec<_>>()
        };
        assert_eq!(delays(7), delays(7));
        assert_ne!(delays(7), delays(8));
        assert_ne!(Jitter::random(), Jitter::random());
    }

    #[test]
    fn an_outage_gets_at_most_9_attempts_in_its_first_minute_then_2_to_4_a_minute() {
        let t0 = Instant::now();
        for seed in 0..200 {
            let mut b = Backoff::new(Schedule::default(), Jitter::seeded(seed));
            // Every attempt fails: the first at t0, each retry after its delay.
            let mut attempts = vec![Duration::ZERO];
            while *attempts.last().unwrap() < 600_000 * MS {
                let at = *attempts.last().unwrap();
                attempts.push(at + b.failed(t0 + at));
            }
            let within = |from: u32, to: u32| {
                attempts
                    .iter()
                    .filter(|a| (from * 1_000 * MS..to * 1_000 * MS).contains(*a))
                    .count()
            };
            assert!(within(0, 60) <= 9, "seed {seed}: {attempts:?}");
            for minute in 2..9 {
                let n = within(minute * 60, minute * 60 + 60);
                assert!((2..=4).contains(&n), "seed {seed}, minute {minute}: {n}");
            }
        }
    }

    #[test]
    fn the_delays_start_over_only_after_a_stretch_of_success() {
        let t0 = Instant::now();
        let s = Schedule {
            jitter_percent: 0,
            ..Schedule::default()
        };
        let mut b = Backoff::new(s, Jitter::seeded(3));
        assert_eq!(b.failed(t0), 800 * MS);
        assert_eq!(b.failed(t0 + 1_000 * MS), 1_600 * MS);
        // A watch that works a little, then is cut again: no reset.
        let mut now = t0 + 3_000 * MS;
        for want in [3_200, 6_400, 12_800] {
            b.succeeded(now);
            b.succeeded(now + 5_000 * MS);
            now += 10_000 * MS;
            assert_eq!(b.failed(now), want * MS);
        }
        // Failing without a success in between never resets, however long.
        assert_eq!(b.failed(now + 600_000 * MS), 25_600 * MS);
        // Healthy for reset_after since the first success: reset.
        now += 700_000 * MS;
        b.succeeded(now);
        b.succeeded(now + 60_000 * MS);
        assert_eq!(b.failed(now + 119_000 * MS), 30_000 * MS);
        b.succeeded(now + 120_000 * MS);
        assert_eq!(b.failed(now + 240_000 * MS), 800 * MS);
        assert_eq!(b.failed(now + 241_000 * MS), 1_600 * MS);
    }

    #[test]
    fn a_retry_after_is_obeyed_when_longer_than_the_schedule() {
        let t0 = Instant::now();
        let mut b = Backoff::new(Schedule::default(), Jitter::seeded(5));
        assert_eq!(b.failed_asking(t0, 10_000 * MS), 10_000 * MS);
        // The schedule went on counting: the second delay is 0.8-1.6 s.
        let d = b.failed_asking(t0, 100 * MS);
        assert!((800 * MS..=1_600 * MS).contains(&d), "{d:?}");
    }
}
