//! The clock the daemon waits on.
//!
//! Every wait of a long-running loop goes through a [`Clock`] (held in
//! [`crate::Runtime::clock`]): the subscription loop's wait for the next poll, reconcile or
//! flag check ([`crate::sync`]), the supervisor's restart backoff and its `healthy_after`
//! ([`crate::supervise`]), the degraded-tenant re-verify backoff ([`crate::tenants`]), the
//! retention loop's hourly prune ([`crate::sync::retention`]) and the outbox worker's idle wait
//! between claims ([`crate::outbox`]).
//!
//! [`Clock::Real`] (the default, what `syncd run` uses) is tokio's clock: `now` and `sleep_until`
//! are `tokio::time`'s, so tokio's paused time (`#[tokio::test(start_paused = true)]`) drives it
//! too. [`Clock::Manual`] is for tests that run the daemon against the in-process emulator over
//! real TCP (where paused time would fire request timeouts): it runs with real time, and the test
//! can [`ManualClock::advance`] it to skip a wait instead of sleeping through it. An advance moves
//! every later `now` forward and wakes every pending `sleep_until` at once; a sleeper whose
//! deadline is now reached returns, the others sleep on for what is left. Request timeouts,
//! SQLite timestamps and the SDK's own retries stay on the wall clock: only the daemon's waits
//! are skipped.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// What the daemon's loops wait on (see the module docs). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// tokio's clock (real time, or tokio's paused time in a test).
    #[default]
    Real,
    /// Real time plus what a test skipped with [`ManualClock::advance`].
    Manual(ManualClock),
}

impl Clock {
    /// The real clock as a constant (for code that needs a `&'static Clock`).
    pub const REAL: Clock = Clock::Real;

    /// The current instant on this clock.
    pub fn now(&self) -> Instant {
        match self {
            Clock::Real => Instant::now(),
            Clock::Manual(manual) => manual.now(),
        }
    }

    /// Waits until this clock reaches `deadline` (an instant of [`Clock::now`]).
    pub async fn sleep_until(&self, deadline: Instant) {
        match self {
            Clock::Real => tokio::time::sleep_until(deadline).await,
            Clock::Manual(manual) => manual.sleep_until(deadline).await,
        }
    }

    /// Waits for `duration` on this clock.
    pub async fn sleep(&self, duration: Duration) {
        let deadline = self.now() + duration;
        self.sleep_until(deadline).await
    }
}

impl From<ManualClock> for Clock {
    fn from(manual: ManualClock) -> Clock {
        Clock::Manual(manual)
    }
}

/// A clock a test moves forward: real time plus every [`ManualClock::advance`] so far. Clones
/// share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The total skipped so far; every change wakes the sleepers.
    skipped: watch::Sender<Duration>,
    /// The deadlines (on this clock) of the pending `sleep_until`s.
    sleeping: watch::Sender<Vec<Instant>>,
}

impl Default for ManualClock {
    fn default() -> ManualClock {
        ManualClock::new()
    }
}

/// Lists a pending sleep's deadline while it lives.
struct Sleeping<'a> {
    pending: &'a watch::Sender<Vec<Instant>>,
    deadline: Instant,
}

impl<'a> Sleeping<'a> {
    fn enter(pending: &'a watch::Sender<Vec<Instant>>, deadline: Instant) -> Sleeping<'a> {
        pending.send_modify(|list| list.push(deadline));
        Sleeping { pending, deadline }
    }
}

impl Drop for Sleeping<'_> {
    fn drop(&mut self) {
        self.pending.send_modify(|list| {
            if let Some(at) = list.iter().position(|d| *d == self.deadline) {
                list.swap_remove(at);
            }
        });
    }
}

impl ManualClock {
    /// A clock at real time (nothing skipped yet).
    pub fn new() -> ManualClock {
        ManualClock {
            inner: Arc::new(Inner {
                skipped: watch::Sender::new(Duration::ZERO),
                sleeping: watch::Sender::new(Vec::new()),
            }),
        }
    }

    /// Real time plus what was skipped.
    pub fn now(&self) -> Instant {
        Instant::now() + *self.inner.skipped.borrow()
    }

    /// Moves the clock forward by `by`: sleepers whose deadline this reaches return now.
    pub fn advance(&self, by: Duration) {
        self.inner.skipped.send_modify(|skipped| *skipped += by);
    }

    /// The total skipped so far.
    pub fn skipped(&self) -> Duration {
        *self.inner.skipped.borrow()
    }

    /// How many waits on this clock are pending right now.
    pub fn sleeping(&self) -> usize {
        self.inner.sleeping.borrow().len()
    }

    /// Returns once at least `count` waits on this clock are pending, without polling.
    pub async fn until_sleeping(&self, count: usize) {
        let mut sleeping = self.inner.sleeping.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = sleeping.wait_for(|list| list.len() >= count).await;
    }

    /// Returns once `count` waits on this clock are pending with between `left.start` and
    /// `left.end` to go: how a test knows that the loops it is after (the ones that wait about
    /// that long) have gone to sleep, so that an [`ManualClock::advance`] now skips their wait.
    pub async fn until_waiting(&self, count: usize, left: std::ops::Range<Duration>) {
        let mut sleeping = self.inner.sleeping.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = sleeping
            .wait_for(|list| {
                let now = self.now();
                list.iter()
                    .filter(|deadline| left.contains(&deadline.saturating_duration_since(now)))
                    .count()
                    >= count
            })
            .await;
    }

    async fn sleep_until(&self, deadline: Instant) {
        let _sleeping = Sleeping::enter(&self.inner.sleeping, deadline);
        let mut skipped = self.inner.skipped.subscribe();
        loop {
            let offset = *skipped.borrow_and_update();
            // The real instant at which this clock reaches the deadline.
            let Some(real) = deadline.checked_sub(offset) else {
                return;
            };
            if real <= Instant::now() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(real) => return,
                changed = skipped.changed() => {
                    // The sender lives as long as `self`; a closed channel would be a bug.
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_advance_ends_a_long_sleep_at_once() {
        let manual = ManualClock::new();
        let clock = Clock::from(manual.clone());
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep(Duration::from_secs(3600)).await }
        });
        manual.until_sleeping(1).await;
        let started = std::time::Instant::now();
        manual.advance(Duration::from_secs(3600));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("the sleep ended after the advance")
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(manual.sleeping(), 0);
        assert_eq!(manual.skipped(), Duration::from_secs(3600));
    }

    #[tokio::test]
    async fn a_partial_advance_leaves_the_rest_of_the_sleep() {
        let manual = ManualClock::new();
        let clock = Clock::from(manual.clone());
        let before = clock.now();
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep(Duration::from_secs(3600)).await }
        });
        manual.until_sleeping(1).await;
        manual.advance(Duration::from_secs(1800));
        assert!(clock.now() >= before + Duration::from_secs(1800));
        // Still sleeping: half an hour is left.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!sleeper.is_finished());
        assert_eq!(manual.sleeping(), 1);
        manual.advance(Duration::from_secs(1800));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("the sleep ended after the second advance")
            .unwrap();
    }

    #[tokio::test]
    async fn until_waiting_finds_the_sleeper_by_what_it_has_left() {
        let manual = ManualClock::new();
        let clock = Clock::from(manual.clone());
        let short = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep(Duration::from_millis(100)).await }
        });
        let long = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep(Duration::from_secs(5)).await }
        });
        tokio::time::timeout(
            Duration::from_secs(5),
            manual.until_waiting(1, Duration::from_secs(4)..Duration::from_secs(6)),
        )
        .await
        .expect("the 5 s sleeper is found");
        manual.advance(Duration::from_secs(5));
        tokio::time::timeout(Duration::from_secs(2), long)
            .await
            .expect("the long sleep was skipped")
            .unwrap();
        short.await.unwrap();
        assert_eq!(manual.sleeping(), 0);
    }

    #[tokio::test]
    async fn without_an_advance_it_runs_in_real_time() {
        let clock = Clock::from(ManualClock::new());
        let started = std::time::Instant::now();
        clock.sleep(Duration::from_millis(30)).await;
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[tokio::test(start_paused = true)]
    async fn the_real_clock_follows_tokios_paused_time() {
        let clock = Clock::Real;
        let before = clock.now();
        clock.sleep(Duration::from_secs(600)).await;
        assert!(clock.now() >= before + Duration::from_secs(600));
    }
}
