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
//! - a change (a list completing counts as one) makes a sync due
//!   [`Periods::quiet`] after the last event of its burst, at most
//!   [`Periods::max_delay`] after the first, so that a burst gives one
//!   sync;
//! - after every sync a full resync is due [`Periods::resync`] later, or
//!   [`Periods::drain_recheck`] later (at most `resync`) when it left real
//!   servers draining;
//! - a sync that failed is retried after the [`Backoff`]'s delay.

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

/// The retry delays of a failed sync: the first one, then doubling, at
/// most `cap`; back to the first after a sync that went well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    /// Delays from `first`, doubling up to `cap`.
    pub fn new(first: Duration, cap: Duration) -> Self {
        Backoff {
            first,
            cap,
            next: first,
        }
    }

    /// A failure at `now`: the delay before the next attempt.
    pub fn failed(&mut self, _now: Instant) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(self.cap);
        delay
    }

    /// A success at `now`.
    pub fn succeeded(&mut self, _now: Instant) {
        self.next = self.first;
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
            resync_at: None,
            retry_at: None,
            backoff,
        }
    }

    /// An object changed at `now`.
    pub fn changed(&mut self, now: Instant) {
        self.burst = Some(self.burst.map_or((now, now), |(first, _)| (first, now)));
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
        let change = self
            .burst
            .map(|(first, last)| (last + self.periods.quiet).min(first + self.periods.max_delay));
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
        self.retry_at = None;
        resync
    }

    /// The sync ended at `now`, `ok` or not, leaving real servers
    /// `draining` or not. Returns the retry delay when it failed.
    pub fn finished(&mut self, now: Instant, ok: bool, draining: bool) -> Option<Duration> {
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

    fn pacing() -> Pacing {
        Pacing::new(periods(), Backoff::new(1_000 * MS, 30_000 * MS))
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
        let t1 = t0 + 5_000 * MS;
        p.changed(t1);
        assert_eq!(p.due(), Some(t1 + 100 * MS));
        // Each event inside the quiet period pushes the sync back...
        for i in 1..=8u32 {
            p.changed(t1 + i * 90 * MS);
            assert_eq!(p.due(), Some(t1 + (i * 90 + 100) * MS), "event {i}");
        }
        // ... up to the max delay after the first event.
        p.changed(t1 + 950 * MS);
        assert_eq!(p.due(), Some(t1 + 1_000 * MS));
        assert!(!p.start(t1 + 1_000 * MS), "a change is no resync");
        // The burst is done: the next one starts anew.
        assert_eq!(p.finished(t1 + 1_010 * MS, true, false), None);
        p.changed(t1 + 1_500 * MS);
        assert_eq!(p.due(), Some(t1 + 1_600 * MS));
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
        // A change in between comes first, and pushes the resync back.
        p.changed(t1 + 1_000 * MS);
        assert_eq!(p.due(), Some(t1 + 1_100 * MS));
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
            Backoff::new(1_000 * MS, 2_000 * MS),
        );
        p.listed(Source::Services, t0);
        p.listed(Source::Slices, t0);
        p.start(t0);
        p.finished(t0, true, true);
        assert_eq!(p.due(), Some(t0 + 2_000 * MS));
    }

    #[test]
    fn a_failed_sync_is_retried_with_a_doubling_delay_reset_by_success() {
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
        // A success: the next failure starts over.
        assert_eq!(p.finished(now, true, false), None);
        assert_eq!(p.due(), Some(now + 30_000 * MS));
        p.changed(now + 10 * MS);
        p.start(now + 110 * MS);
        assert_eq!(p.finished(now + 110 * MS, false, false), Some(1_000 * MS));
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
}
