//! Supervision of the daemon's long-running loops (one per subscription, the outbox worker, and
//! whatever else runs for the daemon's lifetime).
//!
//! [`supervise`] runs a loop as its own tokio task and waits for it. When it fails — returns
//! `Err`, panics (the task's `JoinError`), or returns `Ok` without shutdown having been asked
//! for — the failure is logged (`tracing::error!` with the loop's name and the error) and the
//! loop is started again after a backoff: [`Policy::initial`] doubling up to [`Policy::max`].
//! Once a restarted loop has run for [`Policy::healthy_after`] without failing, its streak of
//! failures is over (the next failure starts the backoff from the beginning again). Shutdown
//! stops it without a restart: a loop that ends (however) after the shutdown token was
//! cancelled is not restarted, and a loop waiting out its backoff stops waiting.
//!
//! What the supervisor sees goes to an [`Observer`]; the daemon's ([`DaemonObserver`]):
//! - counts `syncd_loop_restarts_total{loop}`;
//! - makes `/readyz` not ready while a loop has failed twice or more in a row (its first
//!   restart did not help), until it has run healthy again;
//! - writes the `loops` table ([`crate::store::loops`]) that `syncd status` prints ("loop
//!   sync:contacts: backoff, 3 restarts, last error: …");
//! - registers the loop with the systemd watchdog ([`crate::systemd::Notifier`]) at its first
//!   start and keeps it registered while it fails: a restart does not count as a report, only
//!   the loop's own `alive()` calls do. A loop that keeps failing (or waits out a backoff)
//!   reports nothing, so once its last report is older than the watchdog interval the ping is
//!   withheld and systemd restarts the service, exactly as for a loop that is stuck. Only a
//!   loop stopped by shutdown is unregistered.
//!
//! To supervise another loop (e.g. a pruner), add one [`spawn`] call in
//! [`crate::Daemon::start`] beside the others:
//! `supervise::spawn(&tracker, "prune".into(), policy, observer.clone(), shutdown.clone(), { let
//! (s, t) = (runtime.clone(), shutdown.clone()); move || prune::run(s.clone(), t.clone()) })`.
//! The loop itself should call `runtime.notifier.alive("prune")` at least every
//! `notifier.heartbeat_interval()` (also while it sleeps), and return only on shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::store::loops::{self, LoopRow, LoopState};
use crate::{Error, Result, Runtime};

/// Restart timing (`[supervisor]`; a configuration value, defined in [`crate::config`]).
pub use crate::config::Policy;

/// What happened to a supervised loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An instance started; `failing` > 0 after failures.
    Started {
        /// Restarts so far.
        restarts: u64,
        /// Failures in a row before this start.
        failing: u32,
    },
    /// It failed; it starts again after `backoff` (unless shutdown comes first).
    Failed {
        /// Restarts so far (including the one this failure schedules).
        restarts: u64,
        /// Failures in a row.
        failing: u32,
        /// What failed.
        error: String,
        /// How long until the restart.
        backoff: Duration,
    },
    /// A restarted instance ran [`Policy::healthy_after`] without failing.
    Healthy {
        /// Restarts so far.
        restarts: u64,
    },
    /// It stopped for shutdown.
    Stopped {
        /// Restarts so far.
        restarts: u64,
    },
}

/// Receives what the supervisor sees.
pub trait Observer: Send + Sync + 'static {
    /// One event of loop `name`.
    fn report(&self, name: &str, event: Event) -> impl Future<Output = ()> + Send;

    /// The clock the backoff and `healthy_after` are waited on (the real one unless the
    /// observer knows better: the daemon's is [`crate::Runtime::clock`]).
    fn clock(&self) -> &Clock {
        static REAL: Clock = Clock::REAL;
        &REAL
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(a non-text panic payload)".to_string()
    }
}

/// Runs the loop `start` makes until shutdown, restarting it when it fails (see the module
/// docs). Returns once the loop has stopped for shutdown.
pub async fn supervise<O, F, Fut>(
    name: &str,
    policy: Policy,
    observer: &O,
    shutdown: &CancellationToken,
    mut start: F,
) where
    O: Observer,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let mut restarts: u64 = 0;
    let mut failing: u32 = 0;
    loop {
        if shutdown.is_cancelled() {
            observer.report(name, Event::Stopped { restarts }).await;
            return;
        }
        observer
            .report(name, Event::Started { restarts, failing })
            .await;
        let mut task = tokio::spawn(start());
        let clock = observer.clock();
        let healthy_at = clock.now() + policy.healthy_after;
        let joined = loop {
            tokio::select! {
                joined = &mut task => break joined,
                _ = clock.sleep_until(healthy_at), if failing > 0 => {
                    failing = 0;
                    tracing::info!(r#loop = name, restarts, "loop is healthy again");
                    observer.report(name, Event::Healthy { restarts }).await;
                }
            }
        };
        let error = match joined {
            Ok(Ok(()) | Err(Error::Shutdown)) if shutdown.is_cancelled() => {
                observer.report(name, Event::Stopped { restarts }).await;
                return;
            }
            Ok(Ok(())) => "it returned although shutdown was not requested".to_string(),
            Ok(Err(error)) => error.to_string(),
            Err(join) if join.is_panic() => format!("panicked: {}", panic_text(join.into_panic())),
            Err(join) => format!("its task was cancelled: {join}"),
        };
        if shutdown.is_cancelled() {
            tracing::warn!(r#loop = name, %error, "loop ended with an error during shutdown");
            observer.report(name, Event::Stopped { restarts }).await;
            return;
        }
        failing = failing.saturating_add(1);
        restarts += 1;
        let backoff = policy.backoff(failing);
        tracing::error!(
            r#loop = name,
            %error,
            restarts,
            failing,
            backoff_ms = backoff.as_millis() as u64,
            "loop failed; restarting it after a backoff"
        );
        observer
            .report(
                name,
                Event::Failed {
                    restarts,
                    failing,
                    error,
                    backoff,
                },
            )
            .await;
        tokio::select! {
            _ = observer.clock().sleep(backoff) => {}
            _ = shutdown.cancelled() => {
                observer.report(name, Event::Stopped { restarts }).await;
                return;
            }
        }
    }
}

/// Spawns `supervise(name, …)` on `tracker`: how the daemon starts each long-running loop.
pub fn spawn<O, F, Fut>(
    tracker: &TaskTracker,
    name: String,
    policy: Policy,
    observer: Arc<O>,
    shutdown: CancellationToken,
    start: F,
) where
    O: Observer,
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    tracker.spawn(async move {
        supervise(&name, policy, &*observer, &shutdown, start).await;
    });
}

/// The daemon's [`Observer`]: metrics, `/readyz`, the `loops` table, the watchdog, the systemd
/// status line.
#[derive(Debug)]
pub struct DaemonObserver {
    runtime: Arc<Runtime>,
    rows: Mutex<BTreeMap<String, LoopRow>>,
}

impl DaemonObserver {
    /// An observer for the daemon's loops.
    pub fn new(runtime: Arc<Runtime>) -> DaemonObserver {
        DaemonObserver {
            runtime,
            rows: Mutex::new(BTreeMap::new()),
        }
    }

    /// Forgets the loops an earlier daemon recorded (their rows would be stale).
    pub async fn reset(&self) -> Result<()> {
        self.runtime.store.write(loops::clear).await
    }

    fn row(&self, name: &str, f: impl FnOnce(&mut LoopRow)) -> LoopRow {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        let row = rows.entry(name.to_string()).or_insert_with(|| LoopRow {
            name: name.to_string(),
            state: LoopState::Running,
            restarts: 0,
            failing: 0,
            last_error: None,
            last_error_at: None,
            updated_at: String::new(),
        });
        f(row);
        row.updated_at = crate::store::types::UtcTime::now().text();
        row.clone()
    }
}

impl Observer for DaemonObserver {
    async fn report(&self, name: &str, event: Event) {
        let runtime = &self.runtime;
        let row = match &event {
            Event::Started { restarts, failing } => {
                // Registered once: a restarted instance is not given a fresh watchdog window,
                // it has to report in (`alive`) to count as alive again. So a loop that keeps
                // failing withholds the ping just like a stuck one.
                if *restarts == 0 {
                    runtime.notifier.register(name);
                    runtime
                        .metrics
                        .inc("syncd_loop_restarts_total", &[("loop", name)], 0);
                }
                self.row(name, |r| {
                    r.state = LoopState::Running;
                    r.restarts = *restarts;
                    r.failing = *failing;
                })
            }
            Event::Failed {
                restarts,
                failing,
                error,
                backoff,
            } => {
                runtime
                    .metrics
                    .inc("syncd_loop_restarts_total", &[("loop", name)], 1);
                if *failing >= 2 {
                    runtime.health.set_loop_problem(
                        name,
                        Some(format!(
                            "restarting ({failing} failures in a row, {restarts} restarts), last error: {error}"
                        )),
                    );
                }
                runtime.notifier.status(&format!(
                    "loop {name} failed ({restarts} restarts), restarting in {backoff:?}: {error}"
                ));
                self.row(name, |r| {
                    r.state = LoopState::Backoff;
                    r.restarts = *restarts;
                    r.failing = *failing;
                    r.last_error = Some(error.clone());
                    r.last_error_at = Some(crate::store::types::UtcTime::now().text());
                })
            }
            Event::Healthy { restarts } => {
                runtime.health.set_loop_problem(name, None);
                self.row(name, |r| {
                    r.state = LoopState::Running;
                    r.restarts = *restarts;
                    r.failing = 0;
                })
            }
            Event::Stopped { restarts } => {
                runtime.health.set_loop_problem(name, None);
                runtime.notifier.unregister(name);
                self.row(name, |r| {
                    r.state = LoopState::Stopped;
                    r.restarts = *restarts;
                })
            }
        };
        if let Err(error) = runtime.store.write(move |tx| loops::put(tx, &row)).await {
            tracing::error!(r#loop = name, %error, "could not record the loop's state");
        }
    }

    fn clock(&self) -> &Clock {
        &self.runtime.clock
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::time::{Instant, sleep};

    use super::*;
    use crate::Error;

    #[derive(Default)]
    struct Recorder {
        events: Mutex<Vec<(Instant, Event)>>,
    }

    impl Observer for Recorder {
        async fn report(&self, _name: &str, event: Event) {
            self.events.lock().unwrap().push((Instant::now(), event));
        }
    }

    impl Recorder {
        fn events(&self) -> Vec<(Instant, Event)> {
            self.events.lock().unwrap().clone()
        }
    }

    const POLICY: Policy = Policy {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(8),
        healthy_after: Duration::from_secs(60),
    };

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let got: Vec<u64> = (1..=6).map(|n| POLICY.backoff(n).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 8, 8]);
        assert_eq!(POLICY.backoff(u32::MAX), Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_and_panics_restart_with_doubling_backoff_until_shutdown() {
        let recorder = Arc::new(Recorder::default());
        let shutdown = CancellationToken::new();
        let starts = Arc::new(AtomicU32::new(0));
        let began = Instant::now();
        let task = {
            let recorder = recorder.clone();
            let shutdown = shutdown.clone();
            let starts = starts.clone();
            tokio::spawn(async move {
                supervise("flaky", POLICY, &*recorder, &shutdown, || {
                    let n = starts.fetch_add(1, Ordering::SeqCst);
                    let shutdown = shutdown.clone();
                    async move {
                        match n {
                            0 | 2 | 3 => Err(Error::io(
                                format!("boom {n}"),
                                std::io::Error::other("test failure"),
                            )),
                            1 => panic!("kaboom"),
                            4 => Ok(()),
                            _ => {
                                shutdown.cancelled().await;
                                Ok(())
                            }
                        }
                    }
                })
                .await
            })
        };
        // 5 failures: backoffs 1 + 2 + 4 + 8 + 8 = 23 s, then the sixth start runs.
        sleep(Duration::from_secs(30)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 6);
        shutdown.cancel();
        task.await.unwrap();
        let events = recorder.events();
        let failed: Vec<(u64, u32, String, Duration, Duration)> = events
            .iter()
            .filter_map(|(at, e)| match e {
                Event::Failed {
                    restarts,
                    failing,
                    error,
                    backoff,
                } => Some((*restarts, *failing, error.clone(), *backoff, *at - began)),
                _ => None,
            })
            .collect();
        assert_eq!(failed.len(), 5, "{events:?}");
        assert_eq!(failed[0].2, "boom 0: test failure");
        assert_eq!(failed[1].2, "panicked: kaboom");
        assert!(
            failed[4]
                .2
                .contains("returned although shutdown was not requested")
        );
        let backoffs: Vec<u64> = failed.iter().map(|f| f.3.as_secs()).collect();
        assert_eq!(backoffs, vec![1, 2, 4, 8, 8]);
        let at: Vec<u64> = failed.iter().map(|f| f.4.as_secs()).collect();
        assert_eq!(
            at,
            vec![0, 1, 3, 7, 15],
            "each start waits out the previous backoff"
        );
        assert_eq!(
            failed.iter().map(|f| (f.0, f.1)).collect::<Vec<_>>(),
            vec![(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]
        );
        assert_eq!(
            events.last().map(|(_, e)| e.clone()),
            Some(Event::Stopped { restarts: 5 })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_ran_healthy_long_enough_starts_its_backoff_over() {
        let recorder = Arc::new(Recorder::default());
        let shutdown = CancellationToken::new();
        let starts = Arc::new(AtomicU32::new(0));
        let task = {
            let recorder = recorder.clone();
            let shutdown = shutdown.clone();
            let starts = starts.clone();
            tokio::spawn(async move {
                supervise("pruner", POLICY, &*recorder, &shutdown, || {
                    let n = starts.fetch_add(1, Ordering::SeqCst);
                    let shutdown = shutdown.clone();
                    async move {
                        match n {
                            // Three quick failures, then one that runs 100 s before failing.
                            0..=2 => Err(Error::io("down", std::io::Error::other("test failure"))),
                            3 => {
                                sleep(Duration::from_secs(100)).await;
                                Err(Error::io("late", std::io::Error::other("test failure")))
                            }
                            _ => {
                                shutdown.cancelled().await;
                                Ok(())
                            }
                        }
                    }
                })
                .await
            })
        };
        sleep(Duration::from_secs(200)).await;
        shutdown.cancel();
        task.await.unwrap();
        let events: Vec<Event> = recorder.events().into_iter().map(|(_, e)| e).collect();
        assert!(
            events.contains(&Event::Healthy { restarts: 3 }),
            "{events:?}"
        );
        let backoffs: Vec<(u32, u64)> = events
            .iter()
            .filter_map(|e| match e {
                Event::Failed {
                    failing, backoff, ..
                } => Some((*failing, backoff.as_secs())),
                _ => None,
            })
            .collect();
        assert_eq!(backoffs, vec![(1, 1), (2, 2), (3, 4), (1, 1)]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_during_a_backoff_or_an_error_at_shutdown_does_not_restart() {
        let recorder = Arc::new(Recorder::default());
        let shutdown = CancellationToken::new();
        let starts = Arc::new(AtomicU32::new(0));
        let task = {
            let recorder = recorder.clone();
            let shutdown = shutdown.clone();
            let starts = starts.clone();
            tokio::spawn(async move {
                supervise("outbox", POLICY, &*recorder, &shutdown, || {
                    starts.fetch_add(1, Ordering::SeqCst);
                    async { Err(Error::io("always", std::io::Error::other("test failure"))) }
                })
                .await
            })
        };
        // Failures at 0, 1, 3, 7 s; the fourth backoff (8 s) is interrupted at 10 s.
        sleep(Duration::from_secs(10)).await;
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(starts.load(Ordering::SeqCst), 4);
        let events = recorder.events();
        assert_eq!(
            events.last().map(|(_, e)| e.clone()),
            Some(Event::Stopped { restarts: 4 })
        );

        // A loop that fails because shutdown interrupted it is not restarted either.
        let recorder = Arc::new(Recorder::default());
        let shutdown = CancellationToken::new();
        let starts = Arc::new(AtomicU32::new(0));
        let task = {
            let recorder = recorder.clone();
            let shutdown = shutdown.clone();
            let starts = starts.clone();
            tokio::spawn(async move {
                supervise("sync:a", POLICY, &*recorder, &shutdown, || {
                    starts.fetch_add(1, Ordering::SeqCst);
                    let shutdown = shutdown.clone();
                    async move {
                        shutdown.cancelled().await;
                        Err(Error::Shutdown)
                    }
                })
                .await
            })
        };
        sleep(Duration::from_secs(1)).await;
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        let events: Vec<Event> = recorder.events().into_iter().map(|(_, e)| e).collect();
        assert_eq!(
            events,
            vec![
                Event::Started {
                    restarts: 0,
                    failing: 0
                },
                Event::Stopped { restarts: 0 }
            ]
        );
    }
}
